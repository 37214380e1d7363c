"""The bad-input matrix: each broken raw zone is stopped by the step that can see the problem, with a
message that says what is wrong and where; nothing after that step runs, nothing is committed by the
failing step, and the raw zone is byte-identical afterwards (checksums before/after)."""

from __future__ import annotations

import functools
import json
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from datasteps_helpers import PIPELINE, TENANT, raw_checksums, run_chain

from mlmodels.restaurant_chain import datagen
from model_steps.contract import EXIT_CHECK_FAILED, EXIT_FAILED

RAW = Path("raw") / f"customer={TENANT}"


def _files(lake: Path, table: str) -> list[Path]:
    return sorted((lake / RAW / table).rglob(f"{table}_*.*"))


def _a_busy_file(lake: Path, table: str, skip_last: int = 20) -> Path:
    files = _files(lake, table)[: -skip_last or None]
    return max(files[-60:], key=lambda p: p.stat().st_size)


def _rewrite_csv(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


# ---- mutations: each returns the relative file it broke (for the "where" check) -------------------


def missing_column(lake):
    f = _a_busy_file(lake, "orders")
    _rewrite_csv(
        f, lambda ls: [",".join(x for i, x in enumerate(line.split(",")) if i != 4) for line in ls]
    )
    return f


def extra_column(lake):
    f = _a_busy_file(lake, "orders")
    _rewrite_csv(f, lambda ls: [ls[0] + ",coupon_code"] + [line + ",SUMMER" for line in ls[1:]])
    return f


def _set_field(lake, table, col_idx, value, row=1):
    f = _a_busy_file(lake, table)

    def fn(ls):
        parts = ls[row].split(",")
        parts[col_idx] = value
        ls[row] = ",".join(parts)
        return ls

    _rewrite_csv(f, fn)
    return f


def wrong_type(lake):
    return _set_field(lake, "orders", 3, "twelve")


def null_diner_ids(lake):
    return _set_field(lake, "diners", 0, "")


def duplicate_diner_ids(lake):
    files = _files(lake, "diners")
    src, dst = files[0], files[-30]
    row = src.read_text().splitlines()[1]
    dst.write_text(dst.read_text() + row + "\n")
    return dst


def negative_amounts(lake):
    return _set_field(lake, "orders", 3, "-12.50")


def future_dates(lake):
    return _set_field(lake, "orders", 2, "2031-01-01T12:00:00")


def empty_input(lake):
    for f in _files(lake, "orders"):
        f.write_text(f.read_text().splitlines()[0] + "\n")
    return lake / RAW / "orders"


def truncated_file(lake):
    f = _a_busy_file(lake, "orders")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 25])  # cut inside the last row
    return f


def corrupt_jsonl(lake):
    f = _a_busy_file(lake, "email_events")
    lines = f.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"event_id":"E1","diner_id":"D1","campa\x00\x00garbage\n'
    f.write_bytes(b"".join(lines))
    return f


def non_utf8(lake):
    f = _a_busy_file(lake, "diners")
    lines = f.read_bytes().split(b"\n")
    parts = lines[1].split(b",")
    parts[2] = "Café".encode("latin-1")  # a latin-1 export, not UTF-8
    lines[1] = b",".join(parts)
    f.write_bytes(b"\n".join(lines))
    return f


def single_class_label(lake):
    for f in _files(lake, "email_events"):
        if f.parent.name >= "dt=2026-06-16":
            f.write_text(
                "".join(
                    line
                    for line in f.read_text().splitlines(keepends=True)
                    if '"conversion"' not in line
                )
            )
    return None


def drifted_distribution(lake):
    for f in _files(lake, "orders"):
        _rewrite_csv(
            f,
            lambda ls: (
                [ls[0]]
                + [
                    ",".join([*p[:3], f"{float(p[3]) * 4:.2f}", *p[4:]])
                    for p in (line.split(",") for line in ls[1:])
                ]
            ),
        )
    return None


def unknown_category(lake):
    for f in _files(lake, "diners"):
        _rewrite_csv(
            f,
            lambda ls: [ls[0]] + [re.sub(r",(family|student),", ",vip,", line) for line in ls[1:]],
        )
    return None


def label_window_incomplete(lake):
    for d in sorted((lake / RAW / "email_events").iterdir()):
        if d.name > "dt=2026-06-22":
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    return None


# ---- the raw-zone guards (model_steps.raw_guards) -----------------------------------------------


def nan_amount(lake):
    return _set_field(lake, "orders", 3, "NaN")


def infinite_amount(lake):
    return _set_field(lake, "orders", 3, "1e400")  # parses, but as Infinity


def amount_over_bound(lake):
    return _set_field(lake, "orders", 3, "1e308")  # finite, but a sum of two overflows


def loyalty_out_of_bounds(lake):
    return _set_field(lake, "diners", 4, "7")


def unknown_channel(lake):
    return _set_field(lake, "orders", 4, "kiosk")


def unknown_event_type(lake):
    f = _a_busy_file(lake, "email_events")
    f.write_text(f.read_text().replace('"event_type":"open"', '"event_type":"bounce"', 4))
    return f


def redelivered_drop(lake):
    """A re-sent export: an earlier day's orders file lands again in a later dt= folder."""
    src = _a_busy_file(lake, "orders", skip_last=40)
    later = _files(lake, "orders")[-25]
    dst = later.parent / src.name
    shutil.copyfile(src, dst)
    return dst


def duplicate_order_ids(lake):
    files = _files(lake, "orders")
    src, dst = _a_busy_file(lake, "orders", skip_last=40), files[-30]
    row = src.read_text().splitlines()[1]
    dst.write_text(dst.read_text() + row + "\n")
    return dst


def duplicate_event_ids(lake):
    f = _a_busy_file(lake, "email_events")
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines + lines[:2]))
    return f


def orphan_orders(lake):
    """Orders of diners the CRM export does not have: many of them, above the orphan share."""
    for f in _files(lake, "orders")[-120:]:
        _rewrite_csv(f, lambda ls: [ls[0]] + [re.sub(r",D(\d+),", r",X\1,", x) for x in ls[1:]])
    return None


def orphan_order_few(lake):
    return _set_field(lake, "orders", 1, "D99999999")


def orphan_email_events(lake):
    f = _a_busy_file(lake, "email_events")
    f.write_text(re.sub(r'"diner_id":"D', '"diner_id":"Z', f.read_text()))
    return f


def bom_and_crlf(lake):
    f = _a_busy_file(lake, "orders")
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\n", b"\r\n"))
    return f


def bom_jsonl(lake):
    f = _a_busy_file(lake, "email_events")
    f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes())
    return f


def semicolon_separated(lake):
    f = _a_busy_file(lake, "diners")
    f.write_text(f.read_text().replace(",", ";"))
    return f


def utf16_file(lake):
    f = _a_busy_file(lake, "orders")
    f.write_bytes(f.read_text().encode("utf-16"))
    return f


@functools.cache
def _small_raw_zone() -> Path:
    """A small example raw zone (4,000 diners, ~50 orders a day): enough daily rows for the
    volume check to judge, which the tiny zone's few orders a day are not."""
    root = Path(tempfile.mkdtemp(prefix="small-raw-")) / "lake"
    datagen.write_raw(datagen.generate(4_000, seed=11), f"file://{root}", TENANT)
    return root


def _use_small(lake: Path) -> None:
    shutil.rmtree(lake / "raw")
    shutil.copytree(_small_raw_zone() / "raw", lake / "raw")


def volume_lost_rows(lake):
    _use_small(lake)
    f = _a_busy_file(lake, "orders")
    _rewrite_csv(f, lambda ls: ls[:2])  # the header and one row of ~50
    return f


def volume_many_times(lake):
    _use_small(lake)
    f = _a_busy_file(lake, "orders")
    _rewrite_csv(
        f,
        lambda ls: (
            ls + [re.sub(r"^O", f"R{k:02d}", x) for k in range(12) for x in ls[1:]]
        ),  # new order ids
    )
    return f


# case -> (mutation, step that stops it (None: passes), substrings the message must contain)
CASES = {
    "missing_column": (missing_column, "ingest", ["missing column(s) channel"]),
    "extra_column_warns": (extra_column, None, ["unexpected extra column(s) coupon_code"]),
    "wrong_type": (
        wrong_type,
        "ingest",
        ["column amount has values that are not a valid double", "amount='twelve'"],
    ),
    "null_diner_ids": (null_diner_ids, "ingest", ["column diner_id is empty/null"]),
    "duplicate_diner_ids": (duplicate_diner_ids, "ingest", ["duplicate diner_id"]),
    "negative_amounts": (
        negative_amounts,
        "ingest",
        ["column amount has negative values", "amount='-12.50'"],
    ),
    "future_dates": (
        future_dates,
        "ingest",
        ["column order_ts has dates in the future", "2031-01-01T12:00:00"],
    ),
    "empty_input": (empty_input, "ingest", ["orders:", "hold no rows (empty input)"]),
    "truncated_file": (truncated_file, "ingest", ["malformed row(s)"]),
    "corrupt_jsonl": (corrupt_jsonl, "ingest", ["email_events:", "malformed row(s)"]),
    "non_utf8": (non_utf8, "ingest", ["not valid UTF-8"]),
    "single_class_label": (
        single_class_label,
        "validate",
        ["column label: expect_column_distinct_values_to_equal_set", "missing [1]"],
    ),
    "drifted_distribution": (
        drifted_distribution,
        "validate",
        ["drift against config:", "monetary_lookback="],
    ),
    "unknown_category": (
        unknown_category,
        "ingest",
        ["column segment has value(s) outside its domain", "'vip' x"],
    ),
    "label_window_incomplete": (
        label_window_incomplete,
        "ingest",
        ["label window is not complete", "needs drops up to dt=2026-06-29"],
    ),
    # the raw-zone guards
    "nan_amount": (nan_amount, "ingest", ["column amount has values that are not finite", "'NaN'"]),
    "infinite_amount": (infinite_amount, "ingest", ["not finite numbers", "amount='1e400'"]),
    "amount_over_bound": (
        amount_over_bound,
        "ingest",
        ["column amount has values outside its declared bounds [-inf, 100000]", "'1e308'"],
    ),
    "loyalty_out_of_bounds": (
        loyalty_out_of_bounds,
        "ingest",
        ["column loyalty_member has values outside its declared bounds [0, 1]", "='7'"],
    ),
    "unknown_channel": (
        unknown_channel,
        "ingest",
        ["column channel has value(s) outside its domain", "'kiosk' x1", "an error"],
    ),
    "unknown_event_type_warns": (
        unknown_event_type,
        None,
        ["column event_type has value(s) outside its domain", "'bounce' x4", "a warning"],
    ),
    "redelivered_drop": (
        redelivered_drop,
        "ingest",
        ["re-delivers raw/customer=acme-foods/orders/dt=", "remove one of the two files"],
    ),
    "duplicate_order_ids": (
        duplicate_order_ids,
        "ingest",
        ["duplicate order_id value(s)", "unique across every drop read"],
    ),
    "duplicate_event_ids": (duplicate_event_ids, "ingest", ["duplicate event_id value(s)"]),
    "orphan_orders": (
        orphan_orders,
        "ingest",
        ["have a diner_id that diners.diner_id does not have", "above raw_guards max_orphan_share"],
    ),
    "orphan_order_few_warns": (
        orphan_order_few,
        None,
        ["1 of ", "within raw_guards max_orphan_share 1.00%", "diner_id='D99999999'"],
    ),
    "orphan_email_events": (
        orphan_email_events,
        "ingest",
        ["email_events:", "diners.diner_id does not have", "error: above"],
    ),
    "bom_and_crlf_warn": (bom_and_crlf, None, ["UTF-8 byte-order mark (stripped", "CRLF"]),
    "bom_jsonl_warns": (bom_jsonl, None, ["email_events: 1 file(s) start with a UTF-8 byte-order"]),
    "semicolon_separated": (
        semicolon_separated,
        "ingest",
        ["the header is separated by ';', not ','", "saw 'diner_id;signup_date"],
    ),
    "utf16_file": (utf16_file, "ingest", ["the file is UTF-16", "re-export as UTF-8"]),
    "volume_lost_rows": (
        volume_lost_rows,
        "ingest",
        ["orders: drop dt=", "holds 1 row(s)", "far below the usual volume", "error below 0.05x"],
    ),
    "volume_many_times": (
        volume_many_times,
        "ingest",
        ["orders: drop dt=", "far above the usual volume", "error above 10x"],
    ),
}


@pytest.fixture(scope="module")
def reference_profile(tmp_path_factory, pristine_lake, spark):
    """Run the pristine data once: its feature profile is the drift reference of every case."""
    import shutil

    tmp = tmp_path_factory.mktemp("reference")
    lake = tmp / "lake"
    shutil.copytree(pristine_lake, lake)
    results = run_chain(lake, tmp)
    assert [r["rc"] for r in results] == [0, 0], results
    assert results[1]["xcom"]["status"] == "passed"
    return results[1]["xcom"]["profile_uri"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, lake, tmp_path, reference_profile, caplog):
    mutate, stopper, needles = CASES[case]
    where = mutate(lake)
    before = raw_checksums(lake)
    config = {"validation": {"reference_profile_uri": reference_profile}}
    results = run_chain(
        lake, tmp_path, steps=("ingest", "validate", "train"), config=config, caplog=caplog
    )
    assert raw_checksums(lake) == before, "the raw zone must stay byte-identical"
    steps_run = [r["step"] for r in results]
    committed = [
        lake / table / PIPELINE / f"customer={TENANT}" for table in ("features", "population")
    ]
    if stopper is None:
        # warning only: ingest and validate pass, validate flags it; the chain goes on
        assert [r["rc"] for r in results[:2]] == [0, 0], results
        v = results[1]["xcom"]
        assert v["status"] == "passed_with_warnings"
        text = json.dumps(v["warnings"])
        message = text
    else:
        last = results[-1]
        # validation failures are certain (exit 3, not retried); raw problems keep exit 1
        code = EXIT_CHECK_FAILED if stopper == "validate" else EXIT_FAILED
        assert last["step"] == stopper and last["rc"] == code, results
        assert steps_run == ["ingest", "validate"][: steps_run.index(stopper) + 1], (
            "nothing downstream of the failing step may run"
        )
        message = last["error"]
        if stopper == "ingest":
            assert not [m for t in committed for m in t.rglob("_MANIFEST.json")], (
                "ingest committed nothing"
            )
            assert "nothing was written" in message
        else:
            assert "validation failed" in message and "data_docs/index.html" in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in:\n{message}"
    if where is not None:
        rel = str(where.relative_to(lake))
        assert rel in message, f"the message must name {rel}:\n{message}"
    print(f"\n[{case}] stopped by {stopper or 'nobody (warning)'}:\n{message}")
