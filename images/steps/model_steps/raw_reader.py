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

from mlplatform_contract.settings import RawGuardSettings
from model_steps import lake, raw_guards
from model_steps.contract import StepError
from model_steps.features import training_cutoff
from model_steps.raw_schema import RawTable, raw_table_root

log = logging.getLogger(__name__)
# the raw_guards settings section's defaults (mlplatform_contract.settings, one definition)
DEFAULT_GUARDS: dict[str, Any] = RawGuardSettings().model_dump()
CORRUPT = "_corrupt_record"
FILE = raw_guards.FILE
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


UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
OTHER_SEPARATORS = {";": "';'", "\t": "a tab", "|": "'|'"}


def _quirks_warnings(spec: RawTable, quirks: dict[str, list[str]]) -> list[str]:
    """One warning per unambiguous encoding quirk of a table, with how many files and which."""
    what = {
        "bom": "start with a UTF-8 byte-order mark (stripped; the rows are read as usual)",
        "crlf": "end their lines with CRLF (Windows line ends; read as usual)",
    }
    return [
        f"{spec.name}: {len(files)} file(s) {what[q]}; e.g. {', '.join(files[:3])}"
        for q, files in quirks.items()
        if files
    ]


def _separator_error(where: str, spec: RawTable, text: str) -> str | None:
    """A CSV header that is one field holding another separator: say what was seen."""
    for sep, name in OTHER_SEPARATORS.items():
        if "," not in text and sep in text:
            return (
                f"{where}: the header is separated by {name}, not ',' (saw {text[:80]!r}); "
                f"{spec.name} files must be comma-separated: re-export with ',' as the separator"
            )
    return None


def _header_columns(
    where: str, spec: RawTable, head: bytes, quirks: dict[str, list[str]], report: RawReport
) -> list[str] | None:
    """The file's column names from its first line, or None after recording why not."""
    if head.startswith(UTF16_BOMS):
        report.errors.append(
            f"{where}: the file is UTF-16 (byte-order mark {head[:2]!r}); files must be UTF-8: "
            "re-export as UTF-8"
        )
        return None
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
        quirks["bom"].append(where)
    first_line = head.split(b"\n", 1)[0]
    if first_line.endswith(b"\r"):
        quirks["crlf"].append(where)
    first_line = first_line.rstrip(b"\r")
    try:
        text = first_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.errors.append(
            f"{where}: first line is not valid UTF-8 (byte {exc.start}: "
            f"{first_line[exc.start : exc.start + 4]!r})"
        )
        return None
    if spec.fmt == "csv":
        return [c.strip() for c in next(csv.reader(io.StringIO(text)), [])]
    try:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
    except ValueError:
        report.errors.append(
            f"{where}: first line is not a JSON object (corrupt or truncated file?): {text[:80]!r}"
        )
        return None
    return list(obj)


def check_headers(
    files: list[tuple[str, str]], spec: RawTable, lake_uri: str, report: RawReport
) -> dict[tuple[str, ...], list[str]]:
    """Check each file's first line; group readable files by header (CSV columns are positional).

    Unambiguous quirks are handled and said once per table (a UTF-8 byte-order mark, CRLF line
    ends); an ambiguous one (another separator) is an error that shows what was seen."""
    groups: dict[tuple[str, ...], list[str]] = {}
    expected = list(spec.columns)
    quirks: dict[str, list[str]] = {"bom": [], "crlf": []}
    for _day, uri in files:
        where = _rel(uri, lake_uri)
        head = lake.read_head(uri, 1 << 16)
        if not head.strip() or head.strip() == UTF8_BOM:
            if (
                spec.fmt == "jsonl"
            ):  # JSON lines have no header: an empty file is a day without events
                continue
            report.errors.append(f"{where}: file is empty ({len(head)} bytes, not even a header)")
            continue
        cols = _header_columns(where, spec, head, quirks, report)
        if cols is None:
            continue
        missing = [c for c in expected if c not in cols]
        extra = [c for c in cols if c not in spec.columns]
        if missing:
            sep = _separator_error(where, spec, ",".join(cols)) if len(cols) == 1 else None
            report.errors.append(
                sep
                or f"{where}: missing column(s) {', '.join(missing)}; "
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
    report.warnings.extend(_quirks_warnings(spec, quirks))
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


def _base_checks(spec: RawTable, drop_day: Any) -> dict[str, raw_guards.Check]:
    """The type-level checks: malformed rows, UTF-8, required, types, negatives, future times."""
    from pyspark.sql import functions as F

    checks: dict[
        str, raw_guards.Check
    ] = {}  # name -> (bad-row condition, message, column, severity)
    checks["corrupt"] = (
        F.col(CORRUPT).isNotNull(),
        "malformed row(s) (wrong number of fields, broken quoting or a truncated file)",
        None,
        "error",
    )
    for c in spec.columns:
        checks[f"utf8:{c}"] = (
            F.coalesce(F.col(c).contains(REPLACEMENT_CHAR), F.lit(False)),
            f"column {c} holds bytes that are not valid UTF-8 (the file must be UTF-8 encoded)",
            c,
            "error",
        )
    for c in spec.required:
        checks[f"null:{c}"] = (
            F.col(c).isNull() | (F.trim(F.col(c)) == ""),
            f"column {c} is empty/null, and it is required",
            c,
            "error",
        )
    for c, kind in spec.columns.items():
        if kind != "string":
            checks[f"type:{c}"] = (
                F.col(c).isNotNull() & (F.trim(F.col(c)) != "") & _typed(c, kind).isNull(),
                f"column {c} has values that are not a valid {kind}",
                c,
                "error",
            )
    for c in spec.non_negative:
        checks[f"neg:{c}"] = (
            _typed(c, spec.columns[c]) < 0,
            f"column {c} has negative values (must be >= 0)",
            c,
            "error",
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
            "error",
        )
    return checks


def _old_rows(spec: RawTable, drop_day: Any) -> Any:
    """Rows older than the table's backfill age before their drop day (1) or not (0)."""
    from pyspark.sql import functions as F

    age = spec.volume.backfill_age_days if spec.volume else None
    if age is None or not spec.ts_column:
        return F.lit(0)
    ts = F.to_date(_typed(spec.ts_column, spec.columns[spec.ts_column]))
    return F.when(ts < F.date_sub(drop_day, age), 1).otherwise(0)


def _examples(
    raw: Any, spec: RawTable, cond: Any, col: str | None, lake_uri: str, n: int
) -> list[str]:
    show = [FILE] + ([spec.key] if spec.key else []) + ([col] if col and col != spec.key else [])
    examples = []
    for r in raw.where(cond).select(*show, CORRUPT).limit(n).collect():
        where = _rel(r[FILE], lake_uri)
        if col is None:
            examples.append(f"{where}: {str(r[CORRUPT])[:80]!r}")
        else:
            key = f"{spec.key}={r[spec.key]!r}" if spec.key and col != spec.key else ""
            examples.append(f"{where} {key} {col}={r[col]!r}".replace("  ", " "))
    return examples


def check_rows(
    spark: Any,
    spec: RawTable,
    raw: Any,
    lake_uri: str,
    report: RawReport,
    guards: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, tuple[int, int]]]:
    """Aggregate the row-level checks in one job grouped by source file; return the typed frame
    and each file's (rows, rows older than the backfill age). Records findings, raises nothing."""
    from pyspark.sql import functions as F

    guards = guards or DEFAULT_GUARDS
    drop_day = F.to_date(F.regexp_extract(F.col(FILE), r"dt=(\d{4}-\d{2}-\d{2})", 1))
    checks = _base_checks(spec, drop_day)
    if guards["enabled"]:
        checks.update(raw_guards.row_checks(spec, _typed))
    # a malformed row is reported once, as malformed, not again for each field it lacks
    ok_row = F.col(CORRUPT).isNull()
    checks = {
        name: (cond if name == "corrupt" else (ok_row & cond), msg, col, sev)
        for name, (cond, msg, col, sev) in checks.items()
    }
    old = _old_rows(spec, drop_day) if guards["enabled"] else F.lit(0)
    aggs = [F.count(F.lit(1)).alias("rows"), F.sum(old).alias("old_rows")]
    aggs += [
        F.sum(F.when(cond, 1).otherwise(0)).alias(name.replace(":", "__"))
        for name, (cond, _m, _c, _s) in checks.items()
    ]
    # grouped by file for the volume guard; with the guards off, the one global aggregation
    by = [FILE] if guards["enabled"] else []
    per_file = raw.groupBy(*by).agg(*aggs).collect()
    files = {(r[FILE] if by else ""): (int(r["rows"]), int(r["old_rows"] or 0)) for r in per_file}
    report.rows[spec.name] = sum(n for n, _ in files.values())

    n_examples = int(guards["max_examples"])
    for name, (cond, msg, col, sev) in checks.items():
        bad = sum(int(r[name.replace(":", "__")] or 0) for r in per_file)
        if not bad:
            continue
        examples = _examples(raw, spec, cond, col, lake_uri, n_examples)
        counts = ""
        if name.startswith("domain:") and col:
            counts = f": {raw_guards.unknown_value_counts(raw, cond, col, n_examples + 2)}"
        (report.errors if sev == "error" else report.warnings).append(
            f"{spec.name}: {bad} row(s): {msg}{counts}; e.g. " + "; ".join(examples)
        )
    if spec.key and guards["enabled"]:
        report.errors.extend(
            raw_guards.key_findings(
                spec,
                raw,
                {f: n for f, (n, _) in files.items()},
                lambda u: _rel(u, lake_uri),
                n_examples,
            )
        )
    return raw.select(*[_typed(c, k).alias(c) for c, k in spec.columns.items()]), files


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


def _drops(
    files: list[tuple[str, str]], file_rows: dict[str, tuple[int, int]], lake_uri: str
) -> list[raw_guards.Drop]:
    """Each drop day's rows (a header-only file counts, as 0) from the per-file counts."""
    by_day: dict[str, raw_guards.Drop] = {}
    for day, uri in files:
        by_day.setdefault(day, raw_guards.Drop(day, 0, 0, [])).files.append(uri)
    for f, (rows, old) in file_rows.items():
        m = raw_guards.FILE_DAY.search(f)
        if m and m.group(1) in by_day:
            by_day[m.group(1)].rows += rows
            by_day[m.group(1)].old_rows += old
    return list(by_day.values())


def _table_guards(
    specs: dict[str, RawTable],
    raw_frames: dict[str, Any],
    drops: dict[str, list[raw_guards.Drop]],
    lake_uri: str,
    guards: dict[str, Any],
    report: RawReport,
) -> None:
    """The guards that need a table's every drop, or another table: volume and foreign keys."""
    rel = lambda u: _rel(u, lake_uri)  # noqa: E731
    parents = {n: (specs[n], f) for n, f in raw_frames.items() if specs[n].key}
    for name, raw in raw_frames.items():
        errors, warnings = raw_guards.volume_findings(
            specs[name], drops[name], guards["volume"], rel
        )
        fk_errors, fk_warnings = raw_guards.foreign_key_findings(
            specs[name], raw, parents, rel, guards
        )
        report.errors.extend(errors + fk_errors)
        report.warnings.extend(warnings + fk_warnings)


def _found_files(
    lake_uri: str,
    tenant: str,
    spec: RawTable,
    days: tuple[dt.date | None, dt.date],
    where: str,
    report: RawReport,
) -> list[tuple[str, str]]:
    """The table's files dropped in ``days`` (first or None, last), counted in the report with the
    drop days they span; no file at all is an error named here, where the folder and days are known."""
    lo, hi = days
    files = plan_files(lake_uri, tenant, spec, lo, hi)
    report.files[spec.name] = len(files)
    if not files:
        report.errors.append(
            f"{spec.name}: no input files in {where}/dt=… for drop days "
            f"{lo or 'any'}..{hi} (empty input)"
        )
        return files
    found = sorted(d for d, _ in files)
    report.days[spec.name] = [found[0], found[-1]]
    return files


def _label_window_error(
    spec: RawTable, where: str, last_drop: str, data_date: dt.date, last_needed: dt.date,
    label_window_days: int,
) -> str:  # fmt: skip
    """Why a run cannot use an event table whose drops stop before the data date: the training
    table's label window ends there (and the population's features are taken as of it)."""
    cutoff = training_cutoff(data_date, label_window_days)
    return (
        f"{spec.name}: the label window is not complete: the last drop in {where} is "
        f"dt={last_drop}, but data date {data_date} needs drops up to dt={last_needed} (where the "
        f"{label_window_days}-day label window after the training cutoff {cutoff} ends, "
        "and what the population is taken as of); trigger with an earlier data_date, or "
        "retry once the drops have landed"
    )


def _read_table(
    spark: Any,
    spec: RawTable,
    files: list[tuple[str, str]],
    where: str,
    lake_uri: str,
    report: RawReport,
    guards: dict[str, Any],
) -> tuple[Any, Any, dict[str, tuple[int, int]]] | None:
    """One table through both passes: (raw string frame, kept in memory for the cross-table guards;
    typed frame; each file's rows), or None when no file had a readable header. Files without rows
    are an error said once for the table (unless the header pass already said why)."""
    from pyspark import StorageLevel

    first, last = report.days[spec.name]
    no_rows = (
        f"{spec.name}: {len(files)} file(s) in {where} for drop days "
        f"{first}..{last} hold no rows (empty input)"
    )
    n_errors = len(report.errors)
    groups = check_headers(files, spec, lake_uri, report)
    if not groups:
        if len(report.errors) == n_errors:
            report.errors.append(no_rows)
        return None
    raw = read_strings(spark, spec, groups).persist(StorageLevel.MEMORY_AND_DISK)
    frame, file_rows = check_rows(spark, spec, raw, lake_uri, report, guards)
    if report.rows.get(spec.name, 0) == 0:
        report.errors.append(no_rows)
    return raw, frame, file_rows


def _reject(report: RawReport, raw_frames: dict[str, Any]) -> None:
    """Free the cached raw frames and raise every error (with the warnings): nothing is written."""
    for raw in raw_frames.values():
        raw.unpersist()
    also = "".join(f"\n  - (warning) {w}" for w in report.warnings)
    raise StepError(
        "raw input rejected, nothing was written:\n  - " + "\n  - ".join(report.errors) + also
    )


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
    guards: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], RawReport]:
    """Typed frames of the declared raw tables for this data date, or StepError listing every
    problem.

    With ``require_label_window``, the event tables must have drops up to the data date: that is
    where the training table's label window ends (and what the population's features are as of).
    ``guards`` are the raw_guards settings (defaults when None).
    """
    guards = guards or DEFAULT_GUARDS
    declared = {t.name: t for t in tables}
    broken = raw_guards.declaration_errors(declared)
    if broken:
        raise StepError("raw table declarations are inconsistent:\n  - " + "\n  - ".join(broken))
    report = RawReport()
    plan = raw_plan(
        tables, data_date, lookback_days=lookback_days, label_window_days=label_window_days
    )
    frames: dict[str, Any] = {}
    raw_frames: dict[str, Any] = {}
    drops: dict[str, list[raw_guards.Drop]] = {}
    for name, (lo, hi) in plan.items():
        spec = declared[name]
        where = _rel(raw_table_root(lake_uri, tenant, name), lake_uri)
        files = _found_files(lake_uri, tenant, spec, (lo, hi), where, report)
        if not files:
            continue
        last_drop = report.days[name][1]
        if spec.windowed and require_label_window and last_drop < hi.isoformat():
            report.errors.append(
                _label_window_error(spec, where, last_drop, data_date, hi, label_window_days)
            )
        read = _read_table(spark, spec, files, where, lake_uri, report, guards)
        if read is None:
            continue
        raw_frames[name], frames[name], file_rows = read
        drops[name] = _drops(files, file_rows, lake_uri)
    if guards["enabled"]:
        _table_guards(declared, raw_frames, drops, lake_uri, guards, report)
    if report.errors:
        _reject(report, raw_frames)
    return frames, report
