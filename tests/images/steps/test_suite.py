"""The expectation suite stays right: its structural part is derived from the model's declarations
(columns, types, not-null, the label's classes and rate bounds), `make suite` rewrites it keeping
the author's own expectations, a stale one is refused naming the command, and a one-class label is
stopped by the validate step's checks with a message naming the label."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile

import pandas as pd
import pytest

from mlmodels.customer_propensity import MODEL as PROPENSITY
from mlplatform_contract.settings import ValidationSettings
from model_steps import expectations
from model_steps.contract import UsageError


def tiny_model(tmp_path, **changes):
    """A classifier with one feature, its suite in tmp_path."""
    base = dict(
        feature_schema={"spend": "double"}, numeric_features=("spend",),
        categorical_features={}, label_column="churned", suite=tmp_path / "expectations.json",
    )  # fmt: skip
    return dataclasses.replace(PROPENSITY, name="churn", **{**base, **changes})


def test_a_classifiers_derived_suite_checks_the_labels_classes_and_rate(tmp_path) -> None:
    derived = expectations.derived(tiny_model(tmp_path))
    by_type = {(e["type"], e["kwargs"].get("column")): e for e in derived}
    classes = by_type["expect_column_distinct_values_to_equal_set", "churned"]
    assert classes["kwargs"]["value_set"] == [0, 1] and classes["severity"] == "critical"
    rate = by_type["expect_column_mean_to_be_between", "churned"]["kwargs"]
    assert rate["min_value"] == {"$PARAMETER": "label_rate_min"}
    assert rate["max_value"] == {"$PARAMETER": "label_rate_max"}
    for kind in ("to_exist", "values_to_not_be_null", "values_to_be_in_type_list"):
        assert ("expect_column_" + kind, "spend") in by_type
    assert all(e["meta"][expectations.DERIVED] for e in derived)
    regression = dataclasses.replace(tiny_model(tmp_path), task="regression")
    assert not [e for e in expectations.derived(regression) if "mean" in e["type"]]


def test_make_suite_rewrites_the_derived_part_and_keeps_the_authors_own(tmp_path) -> None:
    model = tiny_model(tmp_path)
    expectations.write(model)
    suite = json.loads(model.suite.read_text())
    own = {"type": "expect_column_values_to_be_between", "severity": "critical",
           "kwargs": {"column": "spend", "min_value": 0}, "meta": {"why": "no refunds"}}  # fmt: skip
    suite["expectations"].append(own)
    model.suite.write_text(json.dumps(suite))
    expectations.check_current(model, suite)  # current: no error

    grown = tiny_model(
        tmp_path, feature_schema={"spend": "double", "orders": "int"},
        numeric_features=("spend", "orders"),
    )  # fmt: skip
    with pytest.raises(UsageError) as caught:
        expectations.check_current(grown, suite)
    message = str(caught.value)
    assert "missing expect_column_to_exist on column orders" in message
    assert "Run `make suite MODEL=churn`" in message and "keeps your own" in message

    assert expectations.write(grown) == (len(expectations.derived(grown)), 1)
    rewritten = json.loads(grown.suite.read_text())
    expectations.check_current(grown, rewritten)
    assert own in rewritten["expectations"]


def test_the_example_models_suites_are_current() -> None:
    from mlmodels.next_spend import MODEL as NEXT_SPEND

    for model in (PROPENSITY, NEXT_SPEND):
        expectations.check_current(model, json.loads(model.suite.read_text()))


@pytest.mark.slow  # Great Expectations' import and run: ~5 s alone
def test_a_one_class_label_is_stopped_by_validate_naming_the_label(tmp_path) -> None:
    """A label hook whose label is 1 for nobody: the derived suite fails it, critically, and the
    message names the label column and why (not a NaN AUC three steps later)."""
    from model_steps.steps.validate import check_table, run_gx, suite_parameters

    model = tiny_model(tmp_path)
    n = 200
    df = pd.DataFrame({
        "diner_id": [f"d{i}" for i in range(n)], "cutoff_date": [dt.date(2026, 6, 1)] * n,
        "spend": [float(i) for i in range(n)], "churned": [0] * n,
    })  # fmt: skip
    vs = ValidationSettings().model_dump()
    params = suite_parameters(vs, {"lookback_days": 365})
    with tempfile.TemporaryDirectory() as docs:
        result = run_gx({"features": (df, expectations.skeleton(model))}, params, docs)
    check = check_table(
        "lake://features", {"attempt": 1}, df, result["features"], ("none", None), vs
    )
    label_errors = [e for e in check.errors if "column churned:" in e]
    assert len(label_errors) == 2, check.errors
    assert any("expect_column_distinct_values_to_equal_set" in e and "missing [1]" in e
               and "the label churned needs both classes" in e for e in label_errors)  # fmt: skip
    assert any("expect_column_mean_to_be_between" in e for e in label_errors)
    assert not [e for e in check.errors if "churned" not in e]  # nothing else is wrong
