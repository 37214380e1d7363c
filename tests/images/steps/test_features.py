"""The platform's point in time, proven on a real model's hooks (customer_propensity): exact values
on a hand-made frame, future rows that cannot change features, Spark == the model's pandas twin."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from mlmodels.customer_propensity import MODEL
from mlmodels.customer_propensity.features import build_features_pandas
from mlplatform_contract.settings import CustomerSettings
from model_steps.features import build_table, window
from model_steps.model_api import ModelContext

CUT = dt.date(2026, 6, 15)
FEATURE_SCHEMA = MODEL.table_schema(labelled=True)


def build_features_spark(diners, orders, events, cutoff):
    """The platform's feature table of the model from unfiltered frames (as ingest builds it)."""
    ctx = ModelContext(
        pipeline=MODEL.name, customer="acme-foods", data_date=cutoff, lake_uri="file:///tmp",
        settings=MODEL.settings(), platform=CustomerSettings(), window=window(cutoff, 365, 14),
    )  # fmt: skip
    frames = {"diners": diners, "orders": orders, "email_events": events}
    return build_table(frames, MODEL, ctx, labelled=True)


def _frames():
    diners = pd.DataFrame(
        {
            "diner_id": ["A", "B", "C", "LATE"],
            "signup_date": pd.to_datetime(["2025-01-01", "2026-06-15", "2024-03-01", "2026-06-16"]),
            "segment": ["family", "student", "senior", "family"],
            "region": ["north", "south", "east", "west"],
            "loyalty_member": [1, 0, 0, 1],
        }
    )
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(7)],
            "diner_id": ["A", "A", "A", "A", "B", "A", "C"],
            "order_ts": pd.to_datetime(
                [
                    "2026-06-15 23:59:59",  # last second of the data date: in
                    "2026-05-01 12:00:00",  # 45 days before: in 90d, not 30d
                    "2025-06-16 00:00:00",  # first second of the 365-day lookback: in
                    "2025-06-15 23:59:59",  # just before the lookback: out
                    "2026-06-16 00:00:00",  # first second after the cutoff: out (future)
                    "2026-06-20 10:00:00",  # after the cutoff: out
                    "2026-01-01 10:00:00",
                ]
            ),
            "amount": [10.0, 20.0, 30.0, 1000.0, 50.0, 999.0, 5.5],
            "channel": ["app", "delivery", "app", "app", "dine_in", "app", "takeaway"],
            "store_id": ["S1"] * 7,
        }
    )
    events = pd.DataFrame(
        {
            "event_id": [f"E{i}" for i in range(9)],
            "diner_id": ["A", "A", "A", "B", "B", "A", "A", "C", "C"],
            "campaign_id": ["C1"] * 5 + ["C2", "C2", "C2", "C2"],
            "event_type": [
                "send",
                "open",
                "conversion",
                "send",
                "open",
                "open",  # after the cutoff: must not count as a past open
                "conversion",  # day 14 of the window: label
                "send",
                "conversion",
            ],  # one second after the window: not a label
            "event_ts": pd.to_datetime(
                [
                    "2026-05-01 09:00:00",
                    "2026-05-02 09:00:00",
                    "2026-05-03 09:00:00",
                    "2026-06-15 09:00:00",
                    "2026-06-16 09:00:00",
                    "2026-06-17 09:00:00",
                    "2026-06-29 23:59:59",
                    "2026-06-16 09:00:00",
                    "2026-06-30 00:00:00",
                ]
            ),
        }
    )
    return diners, orders, events


def _spark_frames(spark, diners, orders, events):
    d = diners.assign(signup_date=diners["signup_date"].dt.date)
    return (spark.createDataFrame(d), spark.createDataFrame(orders), spark.createDataFrame(events))


def test_window_bounds():
    w = window(CUT, 365, 14)
    assert w.cutoff_end == dt.datetime(2026, 6, 16)
    assert w.lookback_start == dt.datetime(2025, 6, 16)
    assert w.label_end == dt.datetime(2026, 6, 30)


@pytest.mark.parametrize("impl", ["spark", "pandas"])
def test_feature_values_on_a_hand_made_frame(spark, impl):
    diners, orders, events = _frames()
    if impl == "spark":
        out = build_features_spark(*_spark_frames(spark, diners, orders, events), CUT).toPandas()
    else:
        out = build_features_pandas(diners, orders, events, CUT)
    assert list(out.columns) == list(FEATURE_SCHEMA)
    rows = out.set_index("diner_id")
    assert set(rows.index) == {"A", "B", "C"}  # LATE signed up after the cutoff
    a, b, c = rows.loc["A"], rows.loc["B"], rows.loc["C"]
    assert (a.orders_lookback, a.orders_90d, a.orders_30d) == (3, 2, 1)
    assert a.monetary_lookback == pytest.approx(60.0)
    assert a.avg_order_value == pytest.approx(20.0)
    assert a.recency_days == 0
    assert a.share_app == pytest.approx(0.6667) and a.share_delivery == pytest.approx(0.3333)
    assert a.tenure_days == (CUT - dt.date(2025, 1, 1)).days
    assert (a.sends_lookback, a.open_rate, a.past_conversion_rate) == (1, 1.0, 1.0)
    assert a.days_since_last_open == (CUT - dt.date(2026, 5, 2)).days
    assert a.label == 1
    assert b.tenure_days == 0 and b.orders_lookback == 0 and b.recency_days == 365
    assert b.avg_order_value == 0.0 and b.open_rate == 0.0 and b.days_since_last_open == 365
    assert b.label == 0  # its open is after the cutoff, and it never converted
    assert c.label == 0  # converted one second after the window
    assert c.segment_senior == 1 and c.segment_family == 0 and c.region_east == 1


def test_point_in_time_future_rows_cannot_change_features(spark, tiny_tables):
    """Rewrite everything after the cutoff (drop it, or add absurd rows): features stay identical;
    only the label may look past the cutoff, and only inside the label window."""
    d, o, e = tiny_tables["diners"], tiny_tables["orders"], tiny_tables["email_events"]
    end = pd.Timestamp(window(CUT, 365, 14).cutoff_end)
    label_end = pd.Timestamp(window(CUT, 365, 14).label_end)
    base = (
        build_features_spark(
            *_spark_frames(spark, d, o.drop(columns="dt"), e.drop(columns="dt")), CUT
        )
        .toPandas()
        .sort_values("diner_id")
        .reset_index(drop=True)
    )

    o2 = o.drop(columns="dt")
    o2 = o2[o2.order_ts < end]
    future_orders = pd.DataFrame(
        {
            "order_id": [f"F{i}" for i in range(len(d))],
            "diner_id": d.diner_id,
            "order_ts": end + pd.to_timedelta(np.arange(len(d)) % 30, unit="D"),
            "amount": 9999.0,
            "channel": "delivery",
            "store_id": "S999",
        }
    )
    o2 = pd.concat([o2, future_orders], ignore_index=True)
    e2 = e.drop(columns="dt")
    in_window_conv = e2[
        (e2.event_ts >= end) & (e2.event_ts < label_end) & (e2.event_type == "conversion")
    ]
    e2 = e2[e2.event_ts < end]
    future_events = pd.DataFrame(
        {
            "event_id": [f"FE{i}" for i in range(len(d))],
            "diner_id": d.diner_id,
            "campaign_id": "CX",
            "event_type": "open",
            "event_ts": end + pd.Timedelta(hours=1),
        }
    )
    late_signups = pd.DataFrame(
        {
            "diner_id": ["NEW1"],
            "signup_date": [end],
            "segment": ["family"],
            "region": ["north"],
            "loyalty_member": [1],
        }
    )
    e2 = pd.concat([e2, future_events, in_window_conv], ignore_index=True)
    d2 = pd.concat([d.drop(columns="dt"), late_signups], ignore_index=True)
    changed = (
        build_features_spark(*_spark_frames(spark, d2, o2, e2), CUT)
        .toPandas()
        .sort_values("diner_id")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(base, changed)

    # and the label is the only column that sees the window: remove its conversions
    e3 = e.drop(columns="dt")
    e3 = e3[~((e3.event_ts >= end) & (e3.event_type == "conversion"))]
    no_label = (
        build_features_spark(
            *_spark_frames(spark, d.drop(columns="dt"), o.drop(columns="dt"), e3), CUT
        )
        .toPandas()
        .sort_values("diner_id")
        .reset_index(drop=True)
    )
    assert no_label["label"].sum() == 0 and base["label"].sum() > 0
    pd.testing.assert_frame_equal(base.drop(columns="label"), no_label.drop(columns="label"))


def test_spark_and_pandas_implementations_agree(spark, tiny_tables):
    d, o, e = (tiny_tables[k].drop(columns="dt") for k in ("diners", "orders", "email_events"))
    s = build_features_spark(*_spark_frames(spark, d, o, e), CUT).toPandas()
    p = build_features_pandas(d, o, e, CUT)
    s = s.sort_values("diner_id").reset_index(drop=True)
    p = p.sort_values("diner_id").reset_index(drop=True)
    assert len(s) == len(p) > 500
    for col in FEATURE_SCHEMA:
        if FEATURE_SCHEMA[col] in ("int", "double"):
            np.testing.assert_allclose(
                s[col].astype(float),
                p[col].astype(float),
                atol=1.5e-4,  # rounding: HALF_UP vs HALF_EVEN
                err_msg=col,
            )
        elif col == "cutoff_date":
            assert set(s[col]) == set(p[col]) == {CUT}
        else:
            assert (s[col] == p[col]).all(), col


def _with_hook(**hooks):
    import dataclasses

    return dataclasses.replace(MODEL, **hooks)


def _build(spark, model):
    diners, orders, events = _frames()
    ctx = ModelContext(
        pipeline=model.name, customer="acme-foods", data_date=CUT, lake_uri="file:///tmp",
        settings=model.settings(), platform=CustomerSettings(), window=window(CUT, 365, 14),
    )  # fmt: skip
    names = ["diners", "orders", "email_events"]
    frames = dict(zip(names, _spark_frames(spark, diners, orders, events), strict=True))
    return build_table(frames, model, ctx, labelled=True).toPandas()


def test_a_missing_declared_column_fails_without_retry_saying_what_to_fix(spark):
    from model_steps.contract import EXIT_CHECK_FAILED, CheckFailed

    def features(frames, ctx):
        return MODEL.features(frames, ctx).drop("open_rate")

    with pytest.raises(CheckFailed) as caught:
        _build(spark, _with_hook(features=features))
    assert caught.value.exit_code == EXIT_CHECK_FAILED
    message = str(caught.value)
    assert "features hook returned no column(s) open_rate" in message
    assert "To fix:" in message and "clear the task" in message


def test_a_lossy_cast_to_a_declared_type_is_refused_naming_column_and_types(spark):
    """A 0-1 rate declared int would become 0/1: refused, naming column, declared and seen type."""
    from model_steps.contract import CheckFailed

    schema = {**MODEL.feature_schema, "share_app": "int"}
    with pytest.raises(CheckFailed) as caught:
        _build(spark, _with_hook(feature_schema=schema))
    message = str(caught.value)
    assert "column share_app: declared int, seen double" in message, message
    assert "e.g. '0.6667'" in message

    # a cast that changes no value (a whole-number double declared int) is accepted
    def features(frames, ctx):
        from pyspark.sql import functions as F

        out = MODEL.features(frames, ctx)
        return out.withColumn("orders_lookback", F.col("orders_lookback").cast("double"))

    table = _build(spark, _with_hook(features=features))
    assert table["orders_lookback"].dtype.kind == "i"
