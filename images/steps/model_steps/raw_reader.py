"""Read the raw zone into typed Spark frames, refusing broken input with a message that says what
is wrong and where (file, column, example rows). The raw zone is only ever read.

Two passes, both cheap compared with the feature job:

1. per file, on the first bytes (no Spark): empty file, undecodable or missing header, missing
   columns (error) and unexpected extra columns (warning, the column is ignored);
2. one Spark aggregation per table over all rows: corrupt/truncated rows, nulls in required columns,
   values that do not parse as their type, bytes that are not UTF-8, negative amounts, event times
   after the day the file was dropped, duplicate keys; then a few example rows for each failed check.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from model_steps import lake
from model_steps.contract import StepError
from model_steps.features import training_cutoff
from model_steps.raw_schema import RawTable, raw_table_root

log = logging.getLogger(__name__)
CORRUPT = "_corrupt_record"
FILE = "_file"
_DT_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")
REPLACEMENT_CHAR = "\ufffd"


@dataclass
class RawReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    days: dict[str, list[str]] = field(default_factory=dict)  # table -> [first, last] drop day read


def _rel(uri: str, lake_uri: str) -> str:
    """A file's path relative to the lake, for messages."""

    def bare(u: str) -> str:
        for scheme in ("file://", "s3a://", "s3://"):
            if u.startswith(scheme):
                u = u[len(scheme) :]
        return u.replace("file:", "", 1) if u.startswith("file:/") else u

    prefix = bare(lake_uri).rstrip("/") + "/"
    path = bare(uri)
    return path[len(prefix) :] if path.startswith(prefix) else uri


def plan_files(
    lake_uri: str, tenant: str, spec: RawTable, first: dt.date | None, last: dt.date
) -> list[tuple[str, str]]:
    """(drop day, file URI) for every data file of ``spec`` dropped in [first, last]."""
    root = raw_table_root(lake_uri, tenant, spec.name)
    out: list[tuple[str, str]] = []
    for d in lake.list_dirs(root):
        m = _DT_DIR.match(d)
        if not m:
            continue
        day = dt.date.fromisoformat(m.group(1))
        if (first is not None and day < first) or day > last:
            continue
        for name in lake.list_files(lake.join(root, d)):
            if name.startswith(("_", ".")):
                continue
            out.append((m.group(1), lake.join(root, d, name)))
    return out


def check_headers(
    files: list[tuple[str, str]], spec: RawTable, lake_uri: str, report: RawReport
) -> dict[tuple[str, ...], list[str]]:
    """Check each file's first line; group readable files by header (CSV columns are positional)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    expected = list(spec.columns)
    for _day, uri in files:
        where = _rel(uri, lake_uri)
        head = lake.read_head(uri, 1 << 16)
        if not head.strip():
            if (
                spec.fmt == "jsonl"
            ):  # JSON lines have no header: an empty file is a day without events
                continue
            report.errors.append(f"{where}: file is empty ({len(head)} bytes, not even a header)")
            continue
        first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
        try:
            text = first_line.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.errors.append(
                f"{where}: first line is not valid UTF-8 (byte {exc.start}: "
                f"{first_line[exc.start : exc.start + 4]!r})"
            )
            continue
        if spec.fmt == "csv":
            cols = [c.strip() for c in next(csv.reader(io.StringIO(text)), [])]
        else:
            try:
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError("not an object")
            except ValueError:
                report.errors.append(
                    f"{where}: first line is not a JSON object "
                    f"(corrupt or truncated file?): {text[:80]!r}"
                )
                continue
            cols = list(obj)
        missing = [c for c in expected if c not in cols]
        extra = [c for c in cols if c not in spec.columns]
        if missing:
            report.errors.append(
                f"{where}: missing column(s) {', '.join(missing)}; "
                f"{spec.name} files must have {', '.join(expected)}"
            )
            continue
        if extra:
            report.warnings.append(
                f"{where}: unexpected extra column(s) {', '.join(extra)} "
                f"(ignored; {spec.name} expects {', '.join(expected)})"
            )
        key = tuple(cols) if spec.fmt == "csv" else tuple(expected)
        groups.setdefault(key, []).append(lake.spark_uri(uri))
    return groups


def read_strings(spark: Any, spec: RawTable, groups: dict[tuple[str, ...], list[str]]) -> Any:
    """All rows as strings plus the corrupt-record text and the source file."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    frames = []
    for header, paths in groups.items():
        schema = StructType(
            [StructField(c, StringType()) for c in header] + [StructField(CORRUPT, StringType())]
        )
        opts = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
        if spec.fmt == "csv":
            df = (
                spark.read.options(
                    header=True,
                    encoding="UTF-8",
                    enforceSchema=True,
                    ignoreLeadingWhiteSpace=True,
                    ignoreTrailingWhiteSpace=True,
                    **opts,
                )
                .schema(schema)
                .csv(paths)
            )
        else:
            df = spark.read.options(encoding="UTF-8", **opts).schema(schema).json(paths)
        frames.append(
            df.select(*[F.col(c) for c in spec.columns], CORRUPT, F.input_file_name().alias(FILE))
        )
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def _typed(col: str, kind: str) -> Any:
    from pyspark.sql import functions as F

    c = F.col(col)
    if kind == "string":
        return c
    if kind == "date":
        return F.to_date(F.try_to_timestamp(c))
    if kind == "timestamp":
        return F.try_to_timestamp(c)
    if kind == "double":
        return c.try_cast("double")
    if kind == "int":
        return c.try_cast("int")
    raise ValueError(kind)


def check_rows(spark: Any, spec: RawTable, raw: Any, lake_uri: str, report: RawReport) -> Any:
    """Aggregate the row-level checks; return the typed frame (raises nothing, records errors)."""
    from pyspark.sql import functions as F

    drop_day = F.to_date(F.regexp_extract(F.col(FILE), r"dt=(\d{4}-\d{2}-\d{2})", 1))
    checks: dict[
        str, tuple[Any, str, str | None]
    ] = {}  # name -> (bad-row condition, message, column)
    checks["corrupt"] = (
        F.col(CORRUPT).isNotNull(),
        "malformed row(s) (wrong number of fields, broken quoting or a truncated file)",
        None,
    )
    for c in spec.columns:
        checks[f"utf8:{c}"] = (
            F.coalesce(F.col(c).contains(REPLACEMENT_CHAR), F.lit(False)),
            f"column {c} holds bytes that are not valid UTF-8 (the file must be UTF-8 encoded)",
            c,
        )
    for c in spec.required:
        checks[f"null:{c}"] = (
            F.col(c).isNull() | (F.trim(F.col(c)) == ""),
            f"column {c} is empty/null, and it is required",
            c,
        )
    for c, kind in spec.columns.items():
        if kind != "string":
            checks[f"type:{c}"] = (
                F.col(c).isNotNull() & (F.trim(F.col(c)) != "") & _typed(c, kind).isNull(),
                f"column {c} has values that are not a valid {kind}",
                c,
            )
    for c in spec.non_negative:
        checks[f"neg:{c}"] = (
            _typed(c, spec.columns[c]) < 0,
            f"column {c} has negative values (must be >= 0)",
            c,
        )
    if spec.ts_column:
        ts = _typed(spec.ts_column, spec.columns[spec.ts_column])
        limit = (
            F.date_add(drop_day, 1).cast("timestamp")
            if spec.columns[spec.ts_column] == "timestamp"
            else F.date_add(drop_day, 1)
        )
        checks[f"future:{spec.ts_column}"] = (
            ts >= limit,
            f"column {spec.ts_column} has dates in the future: after the day the file was "
            "dropped (dt=…), which a source system cannot know",
            spec.ts_column,
        )

    # a malformed row is reported once, as malformed, not again for each field it lacks
    ok_row = F.col(CORRUPT).isNull()
    checks = {
        name: (cond if name == "corrupt" else (ok_row & cond), msg, col)
        for name, (cond, msg, col) in checks.items()
    }
    aggs = [F.count(F.lit(1)).alias("rows")] + [
        F.sum(F.when(cond, 1).otherwise(0)).alias(name.replace(":", "__"))
        for name, (cond, _m, _c) in checks.items()
    ]
    if spec.key and not spec.windowed:  # entity keys: unique across every drop
        aggs.append(F.count_distinct(F.col(spec.key)).alias("distinct_keys"))
        aggs.append(F.count(F.col(spec.key)).alias("nonnull_keys"))
    stats = raw.agg(*aggs).collect()[0].asDict()
    report.rows[spec.name] = int(stats["rows"])

    for name, (cond, msg, col) in checks.items():
        bad = int(stats[name.replace(":", "__")] or 0)
        if not bad:
            continue
        examples = []
        show = (
            [FILE] + ([spec.key] if spec.key else []) + ([col] if col and col != spec.key else [])
        )
        for r in raw.where(cond).select(*show, CORRUPT).limit(3).collect():
            where = _rel(r[FILE], lake_uri)
            if col is None:
                examples.append(f"{where}: {str(r[CORRUPT])[:80]!r}")
            else:
                key = f"{spec.key}={r[spec.key]!r}" if spec.key and col != spec.key else ""
                examples.append(f"{where} {key} {col}={r[col]!r}".replace("  ", " "))
        report.errors.append(f"{spec.name}: {bad} row(s): {msg}; e.g. " + "; ".join(examples))

    if "distinct_keys" in stats:
        dup = int(stats["nonnull_keys"]) - int(stats["distinct_keys"])
        if dup:
            rows = (
                raw.groupBy(spec.key)
                .agg(F.count(F.lit(1)).alias("n"), F.collect_set(FILE).alias("files"))
                .where("n > 1")
                .limit(3)
                .collect()
            )
            examples = [
                f"{spec.key}={r[spec.key]!r} x{r['n']} in "
                + ", ".join(_rel(f, lake_uri) for f in sorted(r["files"])[:2])
                for r in rows
            ]
            report.errors.append(
                f"{spec.name}: {dup} duplicate {spec.key} value(s) ({spec.key} must be "
                "unique); e.g. " + "; ".join(examples)
            )

    return raw.select(*[_typed(c, k).alias(c) for c, k in spec.columns.items()])


def raw_plan(
    tables: tuple[RawTable, ...],
    data_date: dt.date,
    *,
    lookback_days: int,
    label_window_days: int,
) -> dict[str, tuple[dt.date | None, dt.date]]:
    """Drop days (first or None for all, last) each declared raw table is read over for a run's
    two tables: event tables over the lookback before the training cutoff up to the data date (the
    training label window included), entity tables whole up to the data date."""
    first = training_cutoff(data_date, label_window_days) - dt.timedelta(days=lookback_days)
    return {t.name: ((first if t.windowed else None), data_date) for t in tables}


def read_raw(
    spark: Any,
    lake_uri: str,
    tenant: str,
    data_date: dt.date,
    *,
    tables: tuple[RawTable, ...],
    lookback_days: int,
    label_window_days: int,
    require_label_window: bool = True,
) -> tuple[dict[str, Any], RawReport]:
    """Typed frames of the declared raw tables for this data date, or StepError listing every
    problem.

    With ``require_label_window``, the event tables must have drops up to the data date: that is
    where the training table's label window ends (and what the population's features are as of).
    """
    from pyspark import StorageLevel

    report = RawReport()
    cutoff = training_cutoff(data_date, label_window_days)
    plan = raw_plan(
        tables, data_date, lookback_days=lookback_days, label_window_days=label_window_days
    )
    declared = {t.name: t for t in tables}
    frames: dict[str, Any] = {}
    raw_frames: dict[str, Any] = {}
    for name, (lo, hi) in plan.items():
        spec = declared[name]
        files = plan_files(lake_uri, tenant, spec, lo, hi)
        report.files[name] = len(files)
        where = _rel(raw_table_root(lake_uri, tenant, name), lake_uri)
        if not files:
            report.errors.append(
                f"{name}: no input files in {where}/dt=… for drop days "
                f"{lo or 'any'}..{hi} (empty input)"
            )
            continue
        days = sorted(d for d, _ in files)
        report.days[name] = [days[0], days[-1]]
        if spec.windowed and require_label_window and days[-1] < hi.isoformat():
            report.errors.append(
                f"{name}: the label window is not complete: the last drop in {where} is "
                f"dt={days[-1]}, but data date {data_date} needs drops up to dt={hi} (where the "
                f"{label_window_days}-day label window after the training cutoff {cutoff} ends, "
                "and what the population is taken as of); trigger with an earlier data_date, or "
                "retry once the drops have landed"
            )
        n_errors = len(report.errors)
        groups = check_headers(files, spec, lake_uri, report)
        if not groups:
            if len(report.errors) == n_errors:
                report.errors.append(
                    f"{name}: {len(files)} file(s) in {where} for drop days "
                    f"{days[0]}..{days[-1]} hold no rows (empty input)"
                )
            continue
        raw = read_strings(spark, spec, groups).persist(StorageLevel.MEMORY_AND_DISK)
        raw_frames[name] = raw
        frames[name] = check_rows(spark, spec, raw, lake_uri, report)
        if report.rows.get(name, 0) == 0:
            report.errors.append(
                f"{name}: {len(files)} file(s) in {where} for drop days "
                f"{days[0]}..{days[-1]} hold no rows (empty input)"
            )
    if report.errors:
        for raw in raw_frames.values():
            raw.unpersist()
        raise StepError(
            "raw input rejected, nothing was written:\n  - " + "\n  - ".join(report.errors)
        )
    return frames, report
