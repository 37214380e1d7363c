"""The multiclass_classification task: its metrics and gate direction (model_steps.gate), a model
declaring it (classes required, not on the Keras loop), and a LightGBM multiclass model stored as
data and served through model_store with one probability column per class and the likeliest class."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest

from mlmodels.customer_propensity import MODEL as BINARY
from mlplatform_contract.tasks import TASKS
from model_steps import gate, model_store
from model_steps.model_store import IoSpec
from model_steps.serving import class_frame, io_spec, predictions, tabular_frame

CLASSES = ("email", "sms", "app")


def test_multiclass_metrics_by_hand() -> None:
    y = np.array([0, 1, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    m = gate.metrics("multiclass_classification", y, p)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.6, 0.3, 0.8])), abs=1e-6)
    assert m["accuracy"] == 0.75  # the third row is predicted class 1
    # F1: class 0 = 1, class 1 = 2*1/(2+1) = 2/3, class 2 = 2*1/(1+2) = 2/3
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3, abs=1e-6)
    assert (m["rows"], m["classes"]) == (4, 3)
    with pytest.raises(ValueError, match=r"class indices 0\.\.2"):
        gate.metrics("multiclass_classification", np.array([3]), p[:1])


def test_the_gate_prefers_lower_log_loss_and_applies_the_macro_f1_threshold() -> None:
    task = TASKS["multiclass_classification"]
    assert task.default_metric == "log_loss" and "log_loss" in task.lower_is_better
    cand = {"log_loss": 0.80, "macro_f1": 0.5, "accuracy": 0.6}
    champ = {"log_loss": 0.90, "macro_f1": 0.5, "accuracy": 0.6}
    kw = {"task": "multiclass_classification"}
    assert gate.decide({}, cand, "2", champ, "1", **kw).promote  # lower log loss wins
    assert not gate.decide({}, champ, "2", cand, "1", **kw).promote
    refused = gate.decide({"thresholds": {"macro_f1": 0.6}}, cand, "2", None, None, **kw)
    assert not refused.passed and "macro_f1 0.5000 misses the threshold" in refused.reasons[0]


def test_a_multiclass_model_must_name_its_classes_and_not_use_keras() -> None:
    with pytest.raises(ValueError, match=r"classes \(\) must be given"):
        dataclasses.replace(BINARY, task="multiclass_classification")
    with pytest.raises(ValueError, match="framework other than keras"):
        dataclasses.replace(BINARY, task="multiclass_classification", classes=CLASSES)
    with pytest.raises(ValueError, match="only then"):
        dataclasses.replace(BINARY, classes=CLASSES)  # a binary model with classes
    model = dataclasses.replace(BINARY, task="multiclass_classification", classes=CLASSES,
                                framework="lightgbm", fit=lambda d, c: None, network=None)  # fmt: skip
    assert model.class_columns == ("score_email", "score_sms", "score_app")
    assert io_spec(model)["scores"] == list(model.class_columns)
    with pytest.raises(ValueError, match="each named once"):  # two columns score_sms
        dataclasses.replace(model, classes=("email", "sms", "sms"))
    assert model.output_column == "predicted_class"


def test_a_one_column_io_digests_as_before_the_class_fields() -> None:
    io = IoSpec(numeric=["a"], categorical=[], output="score")
    files = {"model.keras": "0" * 64, "io.json": "1" * 64}
    body = {"format_version": 1, "format": "keras-v3", "model": "m", "task": "t",
            "io": {"numeric": ["a"], "categorical": [], "output": "score"},
            "files": dict(sorted(files.items()))}  # fmt: skip
    old = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    assert model_store.content_digest("keras-v3", "m", "t", io, files) == old.hexdigest()


def test_a_lightgbm_multiclass_model_serves_class_columns(tmp_path) -> None:
    lgb = pytest.importorskip("lightgbm")
    model = dataclasses.replace(BINARY, task="multiclass_classification", classes=CLASSES,
                                framework="lightgbm", fit=lambda d, c: None, network=None)  # fmt: skip
    io = io_spec(model)
    rng = np.random.default_rng(0)
    n = 900
    frame = pd.DataFrame({c: rng.normal(size=n) for c in model.numeric_features})
    frame = frame.assign(
        **{c: rng.choice(vocab, n) for c, vocab in model.categorical_features.items()}
    )
    first = model.numeric_features[0]
    y = np.digitize(frame[first], [-0.5, 0.5])  # three classes by the first numeric feature
    clf = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, random_state=0, verbose=-1)
    clf.fit(tabular_frame(frame, io), y)
    directory = tmp_path / "model"
    manifest = model_store.save(directory, clf, fmt="lightgbm-text", model=model.name,
                                task=model.task, io=IoSpec(**io), example=frame.head(5))  # fmt: skip
    served = model_store.load_dir(directory, manifest.digest, "multiclass")
    out = served.predict(frame)
    assert list(out.columns) == ["score_email", "score_sms", "score_app", "predicted_class"]
    np.testing.assert_allclose(out[list(model.class_columns)].sum(axis=1), 1.0, rtol=1e-9)
    want = np.array(CLASSES, dtype=object)[clf.predict_proba(tabular_frame(frame, io)).argmax(1)]
    assert (out["predicted_class"].to_numpy() == want).all()
    m = gate.metrics(model.task, y, predictions(served, model, frame))
    assert m["accuracy"] > 0.9 and m["log_loss"] < math.log(3)
    with pytest.raises(ValueError, match="gives 2 class probabilities, its io names 3"):
        class_frame(np.ones((1, 2)) / 2, io, [0])


def test_publish_reads_the_class_columns_and_the_model_selects_by_top_probability(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from model_steps import lake, scoring
    from model_steps.steps import publish

    def top_first(scores: pa.Table, ctx: object) -> pa.Table:  # the model's choice
        top = pc.max_element_wise(*(scores[c] for c in ("score_email", "score_sms", "score_app")))
        return scores.take(pc.sort_indices(pa.table({"top": top}), [("top", "descending")]))[:2]

    model = dataclasses.replace(
        BINARY, task="multiclass_classification", classes=CLASSES, framework="lightgbm",
        fit=lambda d, c: None, network=None, crm_select=top_first,
        crm_record=lambda row, ctx: {"channel": row["predicted_class"]},
    )  # fmt: skip
    assert scoring.score_columns(model) == (
        "diner_id", "score_email", "score_sms", "score_app", "predicted_class", "model_version")  # fmt: skip
    proba = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    frame = class_frame(proba, io_spec(model), range(3))
    table = pa.table({"diner_id": ["a", "b", "c"], **{c: frame[c].to_numpy() for c in frame},
                      "model_version": ["4"] * 3})  # fmt: skip
    uri = f"file://{tmp_path}/scores"
    lake.commit_parquet_table(uri, [table], {"table": "scores"})
    chosen, rows, _ = publish.select_records(uri, model, None, "run-1")  # type: ignore[arg-type]
    assert rows == 3 and [r["channel"] for r in chosen] == ["sms", "app"]
    bad = table.set_column(1, "score_email", pa.array([0.5, None, 0.2], pa.float64()))
    lake.commit_parquet_table(uri, [bad], {"table": "scores"})
    with pytest.raises(publish.StepError, match="1 null/NaN predicted_class"):
        publish.select_records(uri, model, None, "run-1")  # type: ignore[arg-type]


def test_the_monitor_measures_several_classes_by_hand() -> None:
    from model_steps import monitoring

    y = np.array([0, 1, 2, 2])
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    m = monitoring.realized("multiclass_classification", y, p, CLASSES)
    assert m["accuracy"] == 0.75 and m["classes"] == 3 and "lift_top_decile" not in m
    assert (m["recall_email"], m["recall_sms"], m["recall_app"]) == (1.0, 1.0, 0.5)
    # top-label calibration: 4 bins of one row: |0.7-1| + |0.6-1| + |0.5-0| + |0.8-1| over 4
    assert m["calibration_error"] == pytest.approx((0.3 + 0.4 + 0.5 + 0.2) / 4, abs=1e-6)
    assert "recall_app" not in monitoring.realized("multiclass_classification", y[:2], p[:2],
                                                    CLASSES)  # fmt: skip
    assert list(monitoring.hits(y, p)) == [1.0, 1.0, 0.0, 1.0]
    same = np.array(["email", "sms", "app", "app"], dtype=object)
    assert monitoring.class_drift(same, same[::-1], CLASSES) == 0.0
    assert monitoring.class_drift(same, np.array(["email"] * 4, dtype=object), CLASSES) > 1.0


def test_the_monitor_step_reads_the_class_columns_and_compares_hits(tmp_path) -> None:
    import datetime as dt
    from types import SimpleNamespace

    import pyarrow as pa

    from mlplatform_contract.settings import CustomerSettings
    from model_steps.steps import monitor

    model = dataclasses.replace(BINARY, task="multiclass_classification", classes=CLASSES,
                                framework="lightgbm", fit=lambda d, c: None, network=None)  # fmt: skip
    table = pa.table({
        "diner_id": ["a", "b", "c", "d"],
        "score_email": [0.7, 0.1, 0.2, 0.1], "score_sms": [0.2, 0.6, 0.5, 0.1],
        "score_app": [0.1, 0.3, 0.3, 0.8], "outcome": [0.0, 1.0, 2.0, 2.0],
        "arm": ["treated", "treated", "control", "control"],
    })  # fmt: skip
    run = monitor.ScoredRun("r1", dt.date(2026, 6, 29), "file:///x", {"model_version": "3"})
    loaded = SimpleNamespace(model=model, platform=CustomerSettings())
    figures = monitor.figures(loaded, run, table)  # type: ignore[arg-type]
    assert figures.realized["accuracy"] == 0.75 and figures.realized["recall_sms"] == 1.0
    # the pushed contacts' outcome: both treated diners did what was predicted
    assert figures.pushed == {"contacts": 2, "realized_outcome": 1.0}
    assert monitor._headline(model.task, figures).startswith("realized log_loss")
