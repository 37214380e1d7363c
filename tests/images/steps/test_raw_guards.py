"""The raw-zone guards' parts that need no raw zone: the volume rule (backfills against backfills),
the declarations' consistency, the settings' validation, and that the guard code reads only the
declaration. The guards on real broken drops are cases of the bad-input matrix."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import re

import pytest
from pydantic import ValidationError

from mlmodels.restaurant_chain.tables import TABLES
from mlplatform_contract.settings import step_settings
from model_steps import raw_guards, raw_reader
from model_steps.raw_guards import Drop, volume_findings
from model_steps.raw_schema import Domain, ForeignKey, RawTable, VolumeCheck

VOL = raw_reader.DEFAULT_GUARDS["volume"]


def guard_settings(config: dict) -> dict:
    """What ingest passes to the guards: the raw_guards section of the one settings schema."""
    return step_settings(config).raw_guards.model_dump()


TABLE = RawTable(
    name="events",
    fmt="csv",
    columns={"id": "string", "ts": "timestamp"},
    key="id",
    ts_column="ts",
    volume=VolumeCheck(backfill_age_days=7),
)


def _rel(uri: str) -> str:
    return uri


def _days(n: int, start: dt.date = dt.date(2026, 1, 1)) -> list[str]:
    return [(start + dt.timedelta(days=i)).isoformat() for i in range(n)]


def _drops(rows: list[int], backfill_at: dict[int, int] | None = None) -> list[Drop]:
    backfill_at = backfill_at or {}
    out = []
    for i, (day, n) in enumerate(zip(_days(len(rows)), rows, strict=True)):
        n = backfill_at.get(i, n)
        old = n if i in backfill_at else 0
        out.append(Drop(day, n, old, [f"raw/events/dt={day}/events_{day}.csv"]))
    return out


def test_steady_volume_passes():
    steady = [100, 90, 110, 95, 105, 100, 98, 102, 0 + 97, 103] * 4
    assert volume_findings(TABLE, _drops(steady), VOL, _rel) == ([], [])


@pytest.mark.parametrize(
    ("today", "severity", "needles"),
    [
        (2, "error", ["holds 2 row(s), 0.02x", "far below", "error below 0.05x"]),
        (20, "warning", ["holds 20 row(s), 0.20x", "far below", "warning below 0.3x"]),
        (500, "warning", ["holds 500 row(s), 5.00x", "far above", "warning above 3x"]),
        (1500, "error", ["holds 1500 row(s), 15.00x", "far above", "error above 10x"]),
    ],
)
def test_a_drop_far_from_the_trailing_median_is_named_with_the_threshold(today, severity, needles):
    drops = _drops([100] * 30 + [today])
    errors, warnings = volume_findings(TABLE, drops, VOL, _rel)
    found = errors if severity == "error" else warnings
    assert len(found) == 1 and not (warnings if severity == "error" else errors)
    day = drops[-1].day
    for needle in [f"events: drop dt={day}", f"raw/events/dt={day}/events_{day}.csv", *needles]:
        assert needle in found[0], found[0]
    assert "the median of the previous 28 drops (100 rows)" in found[0]
    assert "expected 30..300 rows" in found[0]


def test_a_backfill_is_compared_with_the_previous_backfill_not_with_deltas():
    # a 5,000-row backfill, 50-row deltas, a second full export of 5,200 rows: all normal
    rows = [50] * 40
    drops = _drops(rows, backfill_at={0: 5_000, 30: 5_200})
    assert volume_findings(TABLE, drops, VOL, _rel) == ([], [])
    # the deltas after the first backfill are not judged against it (the backfill is not history)
    assert volume_findings(TABLE, _drops(rows, backfill_at={0: 5_000}), VOL, _rel) == ([], [])
    # a second backfill that lost most of its rows is judged against the first one
    errors, _ = volume_findings(TABLE, _drops(rows, backfill_at={0: 5_000, 30: 100}), VOL, _rel)
    assert len(errors) == 1
    assert "backfill dt=2026-01-31" in errors[0]
    assert "0.02x the previous backfill dt=2026-01-01 (5000 rows)" in errors[0]


def test_volume_is_not_judged_on_too_little_history_or_too_few_rows():
    # fewer than min_history_drops earlier drops
    assert volume_findings(TABLE, _drops([100] * 5 + [1]), VOL, _rel) == ([], [])
    # a median below min_median_rows: a few rows a day are noise
    assert volume_findings(TABLE, _drops([8] * 30 + [0]), VOL, _rel) == ([], [])
    # no volume declared: bursty tables are not judged
    bursty = dataclasses.replace(TABLE, volume=None)
    assert volume_findings(bursty, _drops([100] * 30 + [1]), VOL, _rel) == ([], [])


def test_volume_thresholds_are_settings():
    strict = {**VOL, "warn_below": 0.9, "error_below": 0.8}
    errors, _ = volume_findings(TABLE, _drops([100] * 30 + [75]), strict, _rel)
    assert errors and "error below 0.8x" in errors[0]


def test_the_declared_tables_are_consistent():
    assert raw_guards.declaration_errors(TABLES) == []


def test_inconsistent_declarations_are_named():
    broken = RawTable(
        name="t",
        fmt="csv",
        columns={"id": "string", "n": "string"},
        key="id",
        bounds={"n": (0, 1), "nope": (None, 1)},
        domains={"zz": Domain(("a",))},
        foreign_keys=(ForeignKey("ref", "missing"),),
        volume=VolumeCheck(backfill_age_days=3),
    )
    errs = "\n".join(raw_guards.declaration_errors({"t": broken}))
    for needle in [
        "bounds on 'n', which is not a declared int/double column",
        "bounds on 'nope'",
        "domain on 'zz'",
        "foreign key column 'ref' is not declared",
        "'ref' -> 'missing': no such keyed table",
        "backfill detection needs a ts_column",
    ]:
        assert needle in errs, errs


def test_guard_code_names_no_model_table_or_column():
    """The guards read the declaration only: a model's raw tables and columns never appear in
    the platform's guard code, so every model gets the same guards by declaring its tables."""
    source = inspect.getsource(raw_guards)
    names = set(TABLES)
    names |= {c for t in TABLES.values() for c in t.columns}
    found = sorted(n for n in names if re.search(rf"\b{re.escape(n)}\b", source))
    assert found == [], f"raw_guards.py names model tables/columns: {found}"
    assert raw_reader.FILE == raw_guards.FILE


@pytest.mark.parametrize(
    "bad",
    [
        {"enabled": "yes"},
        {"max_orphan_share": 1.5},
        {"max_examples": 0},
        {"volume": {"history_drops": 0}},
        {"volume": {"min_history_drops": 40}},
        {"volume": {"warn_below": 0.01}},  # below error_below
        {"volume": {"warn_above": 20}},  # above error_above
        {"volume": {"error_below": -1}},
        "off",
    ],
)
def test_bad_guard_settings_are_refused(bad):
    with pytest.raises(ValidationError, match="raw_guards"):
        guard_settings({"raw_guards": bad})


def test_guard_settings_merge_partially():
    s = guard_settings({"raw_guards": {"volume": {"warn_above": 4}}})
    assert s["volume"]["warn_above"] == 4 and s["volume"]["history_drops"] == 28
    assert s["max_orphan_share"] == 0.01 and s["enabled"] is True


def test_guards_off_lets_what_only_the_guards_see_through(spark, lake):
    """``raw_guards.enabled: false`` (the benchmark's baseline) skips the guards, not the file
    and type checks: an unknown channel passes, a non-numeric amount still fails."""
    from datasteps_helpers import DATA_DATE, TENANT

    from model_steps.contract import StepError

    f = max(
        (lake / "raw" / f"customer={TENANT}" / "orders").rglob("*.csv"),
        key=lambda p: p.stat().st_size,
    )
    lines = f.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[4], "kiosk")
    f.write_text("\n".join(lines) + "\n")
    args = (spark, f"file://{lake}", TENANT, DATA_DATE)
    kw = {"tables": tuple(TABLES.values()), "lookback_days": 365, "label_window_days": 14}
    off = guard_settings({"raw_guards": {"enabled": False}})
    _frames, report = raw_reader.read_raw(*args, **kw, guards=off)
    spark.catalog.clearCache()
    assert report.errors == [] and report.rows["orders"] > 0
    with pytest.raises(StepError, match=r"column channel has value\(s\) outside its domain"):
        raw_reader.read_raw(*args, **kw)
    lines[1] = lines[1].replace(lines[1].split(",")[3], "twelve")
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(StepError, match="not a valid double"):
        raw_reader.read_raw(*args, **kw, guards=off)
