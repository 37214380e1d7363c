"""preferred_channel's own tests, Spark-free (seconds): its classes, its CRM choice and record, its
LightGBM fit stored and served through the platform's interface with a probability column per
class (even for a class the training split lacks), and its settings. Its features, label and suite
run on its example data in the platform's contract test (tests/images/steps/test_model_contract.py);
the whole DAG in the shared run (tests/two_models.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlmodels.preferred_channel import MODEL
from mlmodels.preferred_channel.features import CLASSES, NO_ORDER_INDEX
from mlplatform_contract.settings import CustomerSettings
from model_steps import gate, model_store
from model_steps.model_api import FitData, ModelContext
from model_steps.serving import io_spec, predictions, tabular_frame


def context(**own) -> ModelContext:
    return ModelContext(
        pipeline=MODEL.name, customer="acme-foods", data_date=dt.date(2026, 6, 29),
        lake_uri="file:///tmp", settings=MODEL.settings(**own), platform=CustomerSettings(),
    )  # fmt: skip


def test_a_multiclass_lightgbm_model_with_no_order_as_its_last_class() -> None:
    assert MODEL.task == "multiclass_classification" and MODEL.framework == "lightgbm"
    assert CLASSES == ("dine_in", "takeaway", "delivery", "app", "none")
    assert MODEL.label_fill == NO_ORDER_INDEX == 4  # a diner without an order in the window
    assert MODEL.class_columns[-1] == "score_none" and MODEL.store_format == "lightgbm-text"


def test_the_likeliest_to_order_get_their_likeliest_channel() -> None:
    rows = {  # diner -> P(dine_in, takeaway, delivery, app, none)
        "d1": [0.1, 0.1, 0.1, 0.5, 0.2],
        "d2": [0.05, 0.05, 0.05, 0.05, 0.8],
        "d3": [0.3, 0.3, 0.1, 0.1, 0.2],
        "d4": [0.6, 0.1, 0.1, 0.1, 0.1],
    }
    columns = {c: [p[i] for p in rows.values()] for i, c in enumerate(MODEL.class_columns)}
    scores = pa.table({"diner_id": list(rows), **columns, "model_version": ["2"] * 4})
    ctx = context(top_fraction=0.75)
    chosen = MODEL.crm_select(scores, ctx).to_pylist()
    assert [r["diner_id"] for r in chosen] == ["d4", "d1", "d3"]  # by P(none), ties by id
    first, tied = (MODEL.crm_record(r, ctx) for r in (chosen[0], chosen[2]))
    assert first["preferred_channel"] == "dine_in" and first["order_probability"] == 0.9
    assert first["segment"] == "preferred-channel"
    assert sum(first[f"channel_share_{c}"] for c in CLASSES[:-1]) == pytest.approx(1, abs=1e-3)
    assert tied["preferred_channel"] == "dine_in"  # a tie goes to the first channel


def _frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = pd.DataFrame({c: rng.poisson(2.0, n) for c in MODEL.numeric_features})
    for c, vocab in MODEL.categorical_features.items():
        frame[c] = rng.choice(vocab, n)
    return frame


def test_the_fit_serves_every_class_even_one_the_training_split_lacks(tmp_path) -> None:
    rng = np.random.default_rng(3)
    frame = _frame(1200, rng)
    channel = frame[[f"orders_{c}" for c in CLASSES[:-1]]].to_numpy().argmax(axis=1)
    label = np.where(frame["orders_lookback"] > 3, NO_ORDER_INDEX, channel)
    label = np.where(label == 2, 0, label)  # delivery never happens in this training split
    io = io_spec(MODEL)
    data = tabular_frame(frame, io).assign(next_channel=label)
    split = FitData(data[:1000], data[1000:], tuple(io["numeric"]), tuple(io["categorical"]),
                    "next_channel", seed=0)  # fmt: skip
    booster = MODEL.fit(split, context(boosting_rounds=30))
    manifest = model_store.save(tmp_path / "m", booster, fmt=MODEL.store_format,
                                model=MODEL.name, task=MODEL.task,
                                io=model_store.IoSpec(**io))  # fmt: skip
    served = model_store.load_dir(tmp_path / "m", manifest.digest, "preferred_channel")
    out = served.predict(frame[1000:])
    assert list(out.columns) == [*MODEL.class_columns, "predicted_class"]
    np.testing.assert_allclose(out[list(MODEL.class_columns)].sum(axis=1), 1.0, rtol=1e-9)
    assert out["score_delivery"].max() < 0.05
    m = gate.metrics(MODEL.task, label[1000:], predictions(served, MODEL, frame[1000:]))
    assert m["accuracy"] > 0.8 and m["log_loss"] < np.log(len(CLASSES)) / 2


def test_settings_are_validated_with_the_field_named() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="top_fraction"):
        MODEL.settings(top_fraction=0)
    with pytest.raises(ValidationError, match="boosting_rounds"):
        MODEL.settings(boosting_rounds=0)
