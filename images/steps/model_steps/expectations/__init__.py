"""Expectation suites: each model's own reviewable JSON file, in Great Expectations' suite format.

A model declares its suite file (``Model.suite``, next to its code); there is no fallback to another
model's suite. The suite validates the training table the ingest step builds for that model; the
population is validated with the same suite minus its label expectations (:func:`without_column`).
Each expectation carries ``severity`` (``critical`` fails the task, ``warning`` passes it flagged)
and ``meta.why``. Bounds that differ per platform customer are ``{"$PARAMETER": name}``
placeholders, filled from STEP_CONFIG at run time (``suite_parameters`` in
:mod:`model_steps.steps.validate`).

A suite has two parts. The expectations derived from the model's declarations (``meta.derived``:
columns, types, not-null, key, row count, vocabularies, a classifier label's classes and rate) are
rewritten by `make suite MODEL=<name>` whenever the declarations change, and every step start
checks that they are current (exit 2 with that command otherwise). The author's own expectations
(tightened bounds, relations between columns) are kept by the rewrite.
"""

from __future__ import annotations

import json
from typing import Any

from model_steps.contract import UsageError
from model_steps.model_api import Model


def load_suite(model: Model) -> tuple[str, dict[str, Any]]:
    """(suite file name, suite JSON) of ``model``."""
    try:
        suite = json.loads(model.suite.read_text())
    except FileNotFoundError:
        raise UsageError(
            f"model {model.name}: its expectation suite {model.suite} does not exist"
        ) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"model {model.name}: {model.suite} is not valid JSON ({exc})") from None
    if not isinstance(suite, dict) or not isinstance(suite.get("expectations"), list):
        raise UsageError(f"model {model.name}: {model.suite} has no 'expectations' list")
    check_current(model, suite)
    return model.suite.name, suite


def without_column(suite: dict[str, Any], column: str) -> dict[str, Any]:
    """The suite for a table that lacks ``column`` (the population has no label yet): expectations
    on that column are dropped, and it is taken out of column lists and sets."""
    kept = []
    for expectation in suite["expectations"]:
        kwargs = expectation["kwargs"]
        if kwargs.get("column") == column:
            continue
        lists = {
            k: [c for c in v if c != column]
            for k, v in kwargs.items()
            if k in ("column_list", "column_set") and isinstance(v, list)
        }
        kept.append({**expectation, "kwargs": {**kwargs, **lists}} if lists else expectation)
    return {**suite, "name": f"{suite['name']}.without_{column}", "expectations": kept}


_GX_TYPES = {
    "string": ["str", "object", "string"],
    "int": ["int", "int8", "int16", "int32", "int64", "Int32", "Int64"],
    "double": ["float", "float32", "float64", "Float64"],
    "date": ["date", "datetime64", "datetime64[ns]", "object"],
}
# meta key of the expectations derived from the model's declarations (`make suite` rewrites them)
DERIVED = "derived"


def _exp(kind: str, severity: str, why: str, **kwargs: Any) -> dict[str, Any]:
    meta = {"why": why, DERIVED: True}
    return {"type": kind, "kwargs": kwargs, "severity": severity, "meta": meta}


def derived(model: Model) -> list[dict[str, Any]]:
    """The suite's structural part, from the model's declarations alone: every column exists with
    its type and no nulls, the key is unique, the row count is within the platform's bounds,
    categoricals are in their vocabulary, and a classifier's label holds both classes at a rate
    within ``validation.label_rate_min/max`` (suite parameters filled from the layered settings)."""
    schema = model.table_schema(labelled=True)
    out = [_exp("expect_table_columns_to_match_set", "warning",
                "schema: an extra column is ignored by training, but someone should look",
                column_set=list(schema), exact_match=True),
           _exp("expect_table_row_count_to_be_between", "critical",
                "row-count bounds from validation.min_rows/max_rows",
                min_value={"$PARAMETER": "min_rows"}, max_value={"$PARAMETER": "max_rows"}),
           _exp("expect_column_values_to_be_unique", "critical", f"one row per {model.key}",
                column=model.key)]  # fmt: skip
    for column, kind in schema.items():
        out.append(_exp("expect_column_to_exist", "critical", "schema", column=column))
        out.append(_exp("expect_column_values_to_be_in_type_list", "critical", f"type: {kind}",
                        column=column, type_list=_GX_TYPES[kind]))  # fmt: skip
        out.append(_exp("expect_column_values_to_not_be_null", "critical",
                        "features are complete by construction: a null is a bug upstream",
                        column=column))  # fmt: skip
    for column, vocabulary in model.categorical_features.items():
        out.append(_exp("expect_column_values_to_be_in_set", "critical",
                        "outside the vocabulary the network's one-hot sees an unknown",
                        column=column, value_set=list(vocabulary), mostly=0.99))  # fmt: skip
    return out + _label_checks(model)


def _label_checks(model: Model) -> list[dict[str, Any]]:
    """A classifier's label: both classes, and a rate within the layered settings' bounds; with
    several classes, class indices only."""
    label = model.label_column
    if model.classes:
        return [_exp("expect_column_values_to_be_in_set", "critical",
                     f"the label {label} is the index of one of the {len(model.classes)} classes",
                     column=label, value_set=list(range(len(model.classes))))]  # fmt: skip
    if model.task != "binary_classification":
        return []
    return [
        _exp("expect_column_distinct_values_to_equal_set", "critical",
             f"the label {label} needs both classes 0 and 1 to train a classifier: a one-class "
             f"label means the label hook (or its window, data.label_window_days) is wrong",
             column=label, value_set=[0, 1]),
        _exp("expect_column_mean_to_be_between", "critical",
             f"the rate of label {label} = 1 must lie within validation.label_rate_min/max",
             column=label, min_value={"$PARAMETER": "label_rate_min"},
             max_value={"$PARAMETER": "label_rate_max"}),
    ]  # fmt: skip


def _key(expectation: dict[str, Any]) -> str:
    return json.dumps([expectation["type"], expectation["kwargs"]], sort_keys=True, default=str)


def skeleton(model: Model) -> dict[str, Any]:
    """A new model's suite: the derived part only (what `make new-model` writes)."""
    return merged(model, None)


def merged(model: Model, suite: dict[str, Any] | None) -> dict[str, Any]:
    """``suite`` with its derived part replaced by the model's current declarations; the author's
    own expectations are kept (except exact copies of a derived one)."""
    fresh = derived(model)
    keys = {_key(e) for e in fresh}
    own = [
        e
        for e in (suite or {}).get("expectations", [])
        if not (e.get("meta") or {}).get(DERIVED) and _key(e) not in keys
    ]
    meta = (suite or {}).get("meta") or {
        "owner": model.name,
        "notes": "expectations with meta.derived come from the model's declarations: "
        f"`make suite MODEL={model.name}` rewrites them; add your own freely (kept)",
    }
    return {"name": f"{model.name}.features", "meta": meta, "expectations": fresh + own}


def stale(model: Model, suite: dict[str, Any]) -> list[str]:
    """How the suite's derived part differs from the model's declarations ([] when current)."""
    have = {_key(e): e for e in suite["expectations"] if (e.get("meta") or {}).get(DERIVED)}
    want = {_key(e): e for e in derived(model)}
    return [f"missing {_short(want[k])}" for k in want if k not in have] + [
        f"no longer declared {_short(have[k])}" for k in have if k not in want
    ]


def _short(expectation: dict[str, Any]) -> str:
    column = expectation["kwargs"].get("column")
    return expectation["type"] + (f" on column {column}" if column else "")


def check_current(model: Model, suite: dict[str, Any]) -> None:
    """UsageError (not retried) when the suite's derived part is out of date."""
    changes = stale(model, suite)
    if changes:
        shown = "; ".join(changes[:6]) + (
            f"; and {len(changes) - 6} more" if len(changes) > 6 else ""
        )
        raise UsageError(
            f"model {model.name}: its suite {model.suite} does not match its declarations "
            f"({shown}). Run `make suite MODEL={model.name}`: it rewrites the derived "
            "expectations and keeps your own."
        )


def write(model: Model) -> tuple[int, int]:
    """Write ``model.suite`` from its declarations, keeping its own expectations: (derived, own)."""
    suite = json.loads(model.suite.read_text()) if model.suite.exists() else None
    out = merged(model, suite)
    model.suite.write_text(json.dumps(out, indent=2) + "\n")
    n = len(derived(model))
    return n, len(out["expectations"]) - n


def main(argv: list[str] | None = None) -> int:
    """``python -m model_steps.expectations <model import path>`` (`make suite MODEL=<name>`):
    (re)write the derived part of the model's suite from its declarations; your own expectations
    in the file are kept. ``--check``: only say whether it is current (exit 1 if not)."""
    import importlib
    import sys

    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    refs = [a for a in args if a != "--check"]
    if len(refs) != 1:
        print(main.__doc__, file=sys.stderr)
        return 2
    model = importlib.import_module(refs[0]).MODEL
    if check:
        try:
            check_current(model, json.loads(model.suite.read_text()))
        except UsageError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{model.suite} is current")
        return 0
    n, own = write(model)
    print(f"wrote {model.suite}: {n} expectations derived from the declarations, {own} of your own")
    return 0
