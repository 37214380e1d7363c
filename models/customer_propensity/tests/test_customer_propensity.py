"""customer_propensity's own tests: its CRM choice and record (the platform's point in time is
proven on its features in tests/images/steps/test_features.py)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from mlmodels.customer_propensity import MODEL
from mlplatform_contract.settings import CustomerSettings
from model_steps.model_api import ModelContext


def context(**own) -> ModelContext:
    return ModelContext(
        pipeline=MODEL.name, customer="acme-foods", data_date=dt.date(2026, 6, 29),
        lake_uri="file:///tmp", settings=MODEL.settings(**own), platform=CustomerSettings(),
    )  # fmt: skip


def test_the_top_fraction_by_score_gets_the_offer_ties_by_diner_id() -> None:
    scores = pa.table({
        "diner_id": ["d5", "d1", "d2", "d3", "d4"],
        "score": [0.9, 0.5, 0.9, 0.1, 0.5],
        "model_version": ["3"] * 5,
    })  # fmt: skip
    ctx = context(top_fraction=0.6, offer_code="taco-tuesday")
    chosen = MODEL.crm_select(scores, ctx).to_pylist()
    assert [r["diner_id"] for r in chosen] == ["d2", "d5", "d1"]  # ceil(0.6 * 5) = 3
    assert MODEL.crm_record(chosen[0], ctx) == {
        "propensity_score": 0.9,
        "offer_code": "taco-tuesday",
    }


def test_settings_are_validated_with_the_field_named() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="top_fraction"):
        MODEL.settings(top_fraction=0)
