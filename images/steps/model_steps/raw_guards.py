"""Raw-zone guards: checks every declared raw table gets from its declaration alone.

The declaration (:class:`model_steps.raw_schema.RawTable`) says which columns are keys, which
reference another table, which categorical domains and numeric bounds hold, and whether the table's
drops have a steady volume. This module turns that into Spark checks over the rows ingest reads; it
never names a model's table or column, so a new model's raw tables get the same guards by declaring
them. Thresholds come from the ``raw_guards`` settings section (mlplatform_contract.settings).

1. row level: numbers finite and inside their bounds; categorical values inside their domain
   (error or warning per the column's severity, with counts per unknown value and examples);
2. keys: unique across every drop read; a drop whose rows repeat another drop's keys is named as a
   re-delivery, both files listed;
3. foreign keys: orphan count, share and examples; error above the share, warning below;
4. volume: each drop's rows against the trailing median of the table's earlier drops (a backfill
   against the previous backfill), error/warning ratios from the settings.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model_steps.raw_schema import RawTable

FILE = "_file"  # the raw frame's source-file column
# a finding's condition on the raw string frame, its message, its column and its severity
Check = tuple[Any, str, str | None, str]
FILE_DAY = re.compile(r"dt=(\d{4}-\d{2}-\d{2})")
REDELIVERY_SHARE = 0.9  # a drop whose rows mostly repeat one other drop's keys is a re-delivery


def declaration_errors(tables: dict[str, RawTable]) -> list[str]:
    """What is wrong with the declarations themselves (a model package's bug, not the data's)."""
    out = []
    for t in tables.values():
        where = f"raw table {t.name!r}"
        for c, (lo, hi) in t.bounds.items():
            if t.columns.get(c) not in ("int", "double"):
                out.append(f"{where}: bounds on {c!r}, which is not a declared int/double column")
            elif lo is not None and hi is not None and lo > hi:
                out.append(f"{where}: bounds on {c!r} have lowest {lo} > highest {hi}")
        for c, d in t.domains.items():
            if t.columns.get(c) != "string":
                out.append(f"{where}: domain on {c!r}, which is not a declared string column")
            if not d.values or d.severity not in ("error", "warning"):
                out.append(f"{where}: domain on {c!r} needs values and severity error|warning")
        for fk in t.foreign_keys:
            ref = tables.get(fk.table)
            if fk.column not in t.columns:
                out.append(f"{where}: foreign key column {fk.column!r} is not declared")
            if ref is None or ref.key is None:
                out.append(
                    f"{where}: foreign key {fk.column!r} -> {fk.table!r}: no such keyed table"
                )
        if t.volume and t.volume.backfill_age_days is not None and not t.ts_column:
            out.append(f"{where}: backfill detection needs a ts_column")
    return out


# ---- 1. row level ---------------------------------------------------------------------------


def row_checks(spec: RawTable, typed: Callable[[str, str], Any]) -> dict[str, Check]:
    """Finite numbers, bounds and domains as conditions for check_rows' one aggregation."""
    from pyspark.sql import functions as F

    checks: dict[str, Check] = {}
    for c, kind in spec.columns.items():
        if kind == "double":
            v = typed(c, kind)
            checks[f"finite:{c}"] = (
                F.isnan(v) | (F.abs(v) == float("inf")),
                f"column {c} has values that are not finite numbers (NaN/Infinity, or too large "
                "for a double); every number must be finite",
                c,
                "error",
            )
    for c, (lo, hi) in spec.bounds.items():
        v = typed(c, spec.columns[c])
        out_of = None
        if lo is not None:
            out_of = v < lo
        if hi is not None:
            out_of = (v > hi) if out_of is None else (out_of | (v > hi))
        if out_of is None:
            continue
        finite = ~F.isnan(v) & (F.abs(v) != float("inf"))
        checks[f"bounds:{c}"] = (
            finite & out_of,
            f"column {c} has values outside its declared bounds {_span(lo, hi)}",
            c,
            "error",
        )
    for c, dom in spec.domains.items():
        checks[f"domain:{c}"] = (
            F.col(c).isNotNull() & (F.trim(F.col(c)) != "") & ~F.col(c).isin(*dom.values),
            f"column {c} has value(s) outside its domain ({', '.join(dom.values)}; unknown "
            f"values are {'an error' if dom.severity == 'error' else 'a warning'})",
            c,
            dom.severity,
        )
    return checks


def _span(lo: float | None, hi: float | None) -> str:
    return f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"


def unknown_value_counts(raw: Any, cond: Any, col: str, limit: int) -> str:
    """``'x' x232, 'y' x3`` for a domain finding: which unknown values, how often."""
    from pyspark.sql import functions as F

    rows = raw.where(cond).groupBy(col).agg(F.count(F.lit(1)).alias("n")).orderBy(F.desc("n"), col)
    return ", ".join(f"{r[col]!r} x{r['n']}" for r in rows.limit(limit).collect())


# ---- 2. keys across drops -----------------------------------------------------------------------


def key_findings(
    spec: RawTable, raw: Any, file_rows: dict[str, int], rel: Callable[[str], str], examples: int
) -> list[str]:
    """Errors for keys that repeat anywhere in the drops read. The common case (no duplicates)
    costs one aggregation over 64-bit hashes of the key; only a hit looks at the keys themselves."""
    from pyspark.sql import functions as F

    key = spec.key
    assert key is not None
    hashed = raw.where(F.col(key).isNotNull()).select(F.xxhash64(key).alias("_h"))
    hits = hashed.groupBy("_h").agg(F.count(F.lit(1)).alias("n")).where("n > 1")
    if not hits.limit(1).collect():
        return []
    dups = (
        raw.join(F.broadcast(hits.select("_h")), F.xxhash64(key) == F.col("_h"))
        .groupBy(key)
        .agg(F.count(F.lit(1)).alias("n"), F.array_sort(F.collect_list(FILE)).alias("files"))
        .where("n > 1")
        .cache()
    )
    try:
        total = dups.agg(F.sum(F.col("n") - 1).alias("d")).collect()[0]["d"]
        if not total:
            return []  # only hash collisions
        out = _redeliveries(spec, dups, file_rows, rel)
        sample = dups.orderBy(key).limit(examples).collect()
        eg = "; ".join(
            f"{key}={r[key]!r} x{r['n']} in "
            + ", ".join(rel(f) for f in sorted(set(r["files"]))[:2])
            for r in sample
        )
        out.append(
            f"{spec.name}: {int(total)} duplicate {key} value(s) ({key} must be unique across "
            f"every drop read); e.g. {eg}"
        )
        return out
    finally:
        dups.unpersist()


def _redeliveries(
    spec: RawTable, dups: Any, file_rows: dict[str, int], rel: Callable[[str], str]
) -> list[str]:
    """A drop whose rows mostly repeat another drop's keys: a re-delivery, named as such."""
    from pyspark.sql import functions as F

    pairs = (
        dups.select(
            F.col("files")[0].alias("first"),
            F.explode(F.expr("slice(files, 2, size(files))")).alias("other"),
        )
        .groupBy("first", "other")
        .agg(F.count(F.lit(1)).alias("n"))
        .orderBy(F.desc("n"))
        .limit(20)
        .collect()
    )
    out = []
    for p in pairs:
        first, other, n = p["first"], p["other"], int(p["n"])
        if first == other:
            continue
        rows = file_rows.get(other, 0)
        if n >= 2 and n >= REDELIVERY_SHARE * rows:
            out.append(
                f"{spec.name}: {rel(other)} re-delivers {rel(first)}: {n} of its {rows} "
                f"row(s) repeat {spec.key} values of that drop (re-delivery: >= "
                f"{REDELIVERY_SHARE:.0%} of a drop's rows); every record would be counted "
                "twice: remove one of the two files"
            )
    return out


# ---- 3. foreign keys ----------------------------------------------------------------------------


def foreign_key_findings(
    spec: RawTable,
    raw: Any,
    parents: dict[str, tuple[RawTable, Any]],
    rel: Callable[[str], str],
    guards: dict[str, Any],
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for rows of ``spec`` whose foreign key the referenced table lacks."""
    from pyspark.sql import functions as F

    errors: list[str] = []
    warnings: list[str] = []
    for fk in spec.foreign_keys:
        if fk.table not in parents:
            continue  # that table could not be read: its own error says why
        ref, ref_raw = parents[fk.table]
        keys = ref_raw.select(F.col(ref.key).alias("_k")).where(F.col("_k").isNotNull())
        child = raw.where(F.col(fk.column).isNotNull())
        orphans = child.join(F.broadcast(keys), child[fk.column] == keys["_k"], "left_anti")
        stats = child.agg(F.count(F.lit(1)).alias("rows")).collect()[0]
        n = orphans.count()
        if not n:
            continue
        rows = int(stats["rows"])
        share = n / rows if rows else 0.0
        limit = guards["max_orphan_share"] if fk.max_orphan_share is None else fk.max_orphan_share
        show = [FILE, fk.column] + ([spec.key] if spec.key else [])
        eg = "; ".join(
            f"{rel(r[FILE])} " + (f"{spec.key}={r[spec.key]!r} " if spec.key else "")
            + f"{fk.column}={r[fk.column]!r}"
            for r in orphans.select(*show).limit(guards["max_examples"]).collect()
        )  # fmt: skip
        over = share > limit
        msg = (
            f"{spec.name}: {n} of {rows} row(s) ({share:.2%}) have a {fk.column} that "
            f"{ref.name}.{ref.key} does not have (orphans; {'error' if over else 'warning'}: "
            f"{'above' if over else 'within'} raw_guards max_orphan_share {limit:.2%}); e.g. {eg}"
        )
        (errors if over else warnings).append(msg)
    return errors, warnings


# ---- 4. volume ----------------------------------------------------------------------------------


@dataclass
class Drop:
    day: str
    rows: int
    old_rows: int  # rows older than the table's backfill age before the drop day
    files: list[str]


def volume_findings(
    spec: RawTable, drops: list[Drop], vol: dict[str, Any], rel: Callable[[str], str]
) -> tuple[list[str], list[str]]:
    """(errors, warnings) for drops far from the trailing median of the table's earlier drops.

    A backfill is judged against the previous backfill only and deltas against deltas, so the
    first full export does not make every daily delta look tiny (nor a later backfill huge)."""
    errors: list[str] = []
    warnings: list[str] = []
    if spec.volume is None:
        return errors, warnings
    backfill = spec.volume.backfill_age_days is not None
    series: dict[bool, list[Drop]] = {True: [], False: []}
    for d in sorted(drops, key=lambda d: d.day):
        is_backfill = backfill and d.rows > 0 and d.old_rows * 2 > d.rows
        history = series[is_backfill]
        window = history[-1:] if is_backfill else history[-vol["history_drops"] :]
        series[is_backfill].append(d)
        if len(window) < (1 if is_backfill else vol["min_history_drops"]):
            continue
        median = statistics.median(w.rows for w in window)
        if median < vol["min_median_rows"]:
            continue
        ratio = d.rows / median
        if vol["error_below"] <= ratio <= vol["error_above"] and (
            vol["warn_below"] <= ratio <= vol["warn_above"]
        ):
            continue
        error = ratio < vol["error_below"] or ratio > vol["error_above"]
        low = ratio < 1
        bound = (
            (vol["error_below"] if error else vol["warn_below"])
            if low
            else (vol["error_above"] if error else vol["warn_above"])
        )
        kind = "backfill" if is_backfill else "drop"
        basis = (
            f"the previous backfill dt={window[-1].day}"
            if is_backfill
            else f"the median of the previous {len(window)} drops"
        )
        where = ", ".join(rel(f) for f in d.files[:2]) or "no file"
        msg = (
            f"{spec.name}: {kind} dt={d.day} ({where}) holds {d.rows} row(s), {ratio:.2f}x "
            f"{basis} ({median:g} rows): far {'below' if low else 'above'} the usual volume "
            f"({'error' if error else 'warning'} {'below' if low else 'above'} {bound:g}x; "
            f"expected {vol['warn_below'] * median:g}..{vol['warn_above'] * median:g} rows); "
            + (
                "a partial export or a lost file? re-deliver the full drop"
                if low
                else "a re-sent or merged export? check the drop"
            )
        )
        (errors if error else warnings).append(msg)
    return errors, warnings
