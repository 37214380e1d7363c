"""next_spend's own tests: its label is the window's spend, its features see only the past, and
its VIP segment is the top expected spenders above the floor."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from mlmodels.next_spend import MODEL
from mlplatform_contract.settings import CustomerSettings
from model_steps.features import build_table, window
from model_steps.model_api import ModelContext
from model_steps.testing import spark  # noqa: F401  (the session's SparkSession fixture)

CUT = dt.date(2026, 6, 1)


def context(**own) -> ModelContext:
    platform = CustomerSettings.model_validate(
        {"data": {"lookback_days": 180, "label_window_days": 28}}
    )
    return ModelContext(
        pipeline=MODEL.name, customer="acme-foods", data_date=CUT, lake_uri="file:///tmp",
        settings=MODEL.settings(**own), platform=platform, window=window(CUT, 180, 28),
    )  # fmt: skip


def test_label_is_the_spend_of_the_window_and_features_see_only_the_past(spark) -> None:  # noqa: F811
    diners = pd.DataFrame({
        "diner_id": ["A", "B"], "signup_date": [dt.date(2025, 1, 1)] * 2,
        "segment": ["family"] * 2, "region": ["north", "east"], "loyalty_member": [1, 0],
    })  # fmt: skip
    orders = pd.DataFrame({
        "order_id": ["o1", "o2", "o3", "o4", "o5"],
        "diner_id": ["A", "A", "A", "A", "B"],
        "order_ts": pd.to_datetime([
            "2026-05-30 12:00:00", "2026-06-01 23:59:59",  # before the cutoff's end: features
            "2026-06-02 00:00:00", "2026-06-29 23:59:59",  # the 28-day window: label
            "2026-06-30 00:00:00",  # after the window: nowhere
        ]),
        "amount": [10.0, 5.0, 20.0, 7.5, 99.0],
        "channel": ["app", "app", "delivery", "app", "dine_in"], "store_id": ["S1"] * 5,
    })  # fmt: skip
    frames = {"diners": spark.createDataFrame(diners), "orders": spark.createDataFrame(orders)}
    table = build_table(frames, MODEL, context(), labelled=True).toPandas().set_index("diner_id")
    a, b = table.loc["A"], table.loc["B"]
    assert a.spend_next == pytest.approx(27.5) and b.spend_next == 0.0  # label_fill
    assert a.spend_7d == pytest.approx(15.0) and a.orders_lookback == 2
    assert a.days_since_last_order == 0 and a.favourite_channel == "app"
    assert b.orders_lookback == 0 and b.favourite_channel == "none"
    assert b.days_since_last_order == 180  # capped at the lookback


def test_vip_segment_is_the_top_expected_spenders_above_the_floor() -> None:
    scores = pa.table({
        "diner_id": [f"d{i}" for i in range(10)],
        "prediction": [5.0, 50.0, 1.0, 80.0, 0.2, 50.0, 3.0, 2.0, 9.0, 0.0],
        "model_version": ["1"] * 10,
    })  # fmt: skip
    ctx = context(vip_fraction=0.3, min_expected_spend=4.0, segment="vip")
    chosen = MODEL.crm_select(scores, ctx).to_pylist()
    assert [r["diner_id"] for r in chosen] == ["d3", "d1", "d5"]
    assert MODEL.crm_record(chosen[0], ctx) == {"segment": "vip", "expected_spend_28d": 80.0}
    floor = context(vip_fraction=0.5, min_expected_spend=60.0)
    assert [r["diner_id"] for r in MODEL.crm_select(scores, floor).to_pylist()] == ["d3"]
