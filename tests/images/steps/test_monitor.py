"""The monitor step on a world whose truth is known: the generator's own conversion probabilities
are the scores, the campaign's effect is the generator's offer effect, so the realized AUC and the
uplift the step reports can be checked against what really happened."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from datasteps_helpers import PIPELINE, TENANT, model_env

from mlmodels.restaurant_chain import datagen
from model_steps import campaign, campaign_loop, lake
from model_steps.contract import StepContext
from model_steps.gate import roc_auc
from model_steps.steps import monitor
from model_steps.steps.publish import Selection, hold_out_control

DINERS = 3000
SEED = 11
DATA_DATE = datagen.DEFAULT_DATA_DATE
WINDOW = 14
HISTORY = 60  # days of drops before the cutoff: fewer files, the same signal
RUN_ID = "scheduled__2026-06-30T05:00:00+00:00"
CONFIG = {
    "data": {"label_window_days": WINDOW},
    "crm": {
        "control_fraction": 0.5,
        # offer variants in the treated arm: the monitor learns from them (model_steps.campaign_loop)
        "campaign": {
            "id": "spring",
            "variants": [{"id": "pct10"}, {"id": "pct20"}, {"id": "treat"}],
        },
    },
    "monitoring": {"min_arm_size": 50},
}


def _truth() -> dict:
    """Each diner's true conversion probability on the newsletter after the data date."""
    start = np.datetime64(datagen.DEFAULT_CUTOFF - dt.timedelta(days=HISTORY))
    end = np.datetime64(DATA_DATE)
    h = datagen._hidden_state(np.random.default_rng(SEED), DINERS, start, end)
    who = np.flatnonzero(h["signup"] <= end)
    logit = datagen._conversion_logit(h, who, h["churn_at"][who] > end)
    return {"ids": h["diner_ids"][who], "logit": logit}


def _ctx(
    lake_root: Path, data_date: dt.date, tmp: Path, run_id: str, config: dict = CONFIG, **params
) -> StepContext:
    env = {
        "LAKE_URI": f"file://{lake_root}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
        **model_env(PIPELINE),
    }
    return StepContext(
        step="monitor", pipeline=PIPELINE, customer=TENANT, run_id=run_id,
        data_date=data_date, config=config, params=params, env=env,
    )  # fmt: skip


def _scored_and_published(
    lake_root: Path, tmp: Path, truth: dict, config: dict = CONFIG
) -> tuple[StepContext, list]:
    """A scored run at the data date (scores = the true probabilities) and its campaign: the
    top 20% selected, half of them held out, the rest treated."""
    ctx = _ctx(lake_root, DATA_DATE, tmp, RUN_ID, config)
    scores = pa.table({
        "diner_id": pa.array(truth["ids"], pa.string()),
        "score": pa.array(1 / (1 + np.exp(-truth["logit"])), pa.float64()),
        "model_version": pa.array(["1"] * len(truth["ids"]), pa.string()),
    })  # fmt: skip
    manifest = lake.commit_parquet_table(
        f"file://{lake_root}/scores/{PIPELINE}/customer={TENANT}/run={ctx.run_key}",
        [scores],
        {
            "data_date": DATA_DATE.isoformat(),
            "model_version": "1",
            "registered_model": f"{PIPELINE}__{TENANT}",
        },
    )
    top = scores.sort_by([("score", "descending")]).slice(0, len(truth["ids"]) // 5)
    from model_steps import model_loader

    loaded = model_loader.load(ctx)
    chosen = Selection(top, loaded.model, model_loader.model_context(ctx, loaded), ctx.run_key)
    identity, spec = f"{PIPELINE}/{TENANT}/{ctx.run_key}", loaded.platform.crm.campaign
    treated, _ = hold_out_control(ctx, chosen, manifest, 0.5, identity, spec)
    return ctx, treated.table["diner_id"].to_pylist()


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    tmp = tmp_path_factory.mktemp("monitor")
    root = tmp / "lake"
    datagen.write_raw(
        datagen.generate(DINERS, seed=SEED, history_days=HISTORY), f"file://{root}", TENANT
    )
    truth = _truth()
    ctx, treated = _scored_and_published(root, tmp, truth)
    return {"root": root, "tmp": tmp, "truth": truth, "ctx": ctx, "treated": treated}


def _land_outcomes(root: Path, treated: list[str]) -> None:
    tables = datagen.generate_outcomes(
        DINERS, days=WINDOW, seed=SEED, history_days=HISTORY, offer_treated=treated
    )
    first, last = DATA_DATE + dt.timedelta(days=1), DATA_DATE + dt.timedelta(days=WINDOW)
    datagen.write_raw(tables, f"file://{root}", TENANT, (first, last))


def test_a_run_stays_pending_until_its_window_closes_and_its_drops_land(world):
    early = _ctx(world["root"], DATA_DATE + dt.timedelta(days=5), world["tmp"], "m1")
    result = monitor.run(early).to_xcom()
    assert result["status"] == "nothing_due" and result["monitored"] == []
    assert "closes on 2026-07-13" in result["pending"][0]["reason"]
    late = _ctx(world["root"], DATA_DATE + dt.timedelta(days=WINDOW), world["tmp"], "m2")
    result = monitor.run(
        late
    ).to_xcom()  # the window has closed, but no drop after the data date landed
    assert result["status"] == "nothing_due"
    reason = result["pending"][0]["reason"]
    assert reason.startswith("outcome drops not landed yet: orders (last drop 2026-06-29, needs "
                             "dt=2026-07-13")  # fmt: skip
    assert "email_events (last drop 2026-06-29" in reason
    assert campaign_loop.latest_version(late, "spring") == "prior"  # the state waits for them


def test_monitoring_recovers_the_realized_auc_and_the_known_uplift(world):
    root, truth, treated = world["root"], world["truth"], world["treated"]
    _land_outcomes(root, treated)
    ctx = _ctx(root, DATA_DATE + dt.timedelta(days=WINDOW), world["tmp"], "m3")
    result = monitor.run(ctx).to_xcom()
    assert result["monitored"] == [world["ctx"].run_key]

    # the outcome as the generator wrote it, read back with pandas, not through the step
    events = datagen.generate_outcomes(
        DINERS, days=WINDOW, seed=SEED, history_days=HISTORY, offer_treated=treated
    )["email_events"]
    converted = set(events.loc[events["event_type"] == "conversion", "diner_id"])
    y = np.array([i in converted for i in truth["ids"]])
    expected_auc = roc_auc(y, truth["logit"])
    assert result["realized"]["roc_auc"] == pytest.approx(expected_auc, abs=1e-6)
    assert result["realized"]["roc_auc"] > 0.7  # the true probabilities rank well

    up = result["uplift"]
    assert up["verdict"] == "win" and up["n_treated"] + up["n_control"] == len(truth["ids"]) // 5
    index = {d: i for i, d in enumerate(truth["ids"])}
    selected = [index[d] for d in treated] + [
        index[d]
        for d in lake.read_parquet_table(world["ctx"].lake_path(campaign.CAMPAIGN_ZONE))[0]
        .filter(pa.compute.equal(pa.compute.field("arm"), "control"))["diner_id"]
        .to_pylist()
    ]
    logit = truth["logit"][selected]
    effect = float(np.mean(1 / (1 + np.exp(-(logit + datagen.OFFER_EFFECT_LOGIT)))
                           - 1 / (1 + np.exp(-logit))))  # fmt: skip
    assert up["ci_low"] <= effect <= up["ci_high"], (effect, up)

    # the model version it names is not in the registry (nothing was registered): reported
    assert result["retrain"]["requested"] is False
    figures = lake.read_manifest(ctx.run_path("monitoring", world["ctx"].run_key))["figures"]
    assert figures["mlflow"]["version_found"] is False
    report = Path(lake.local_path(result["report_uri"]))
    assert report.read_text().count("<tr>") == 2 and (report.parent / "trend.png").stat().st_size
    _assert_learned(ctx, figures["campaign"], converted, treated)


def _assert_learned(ctx: StepContext, learned: dict, converted: set, treated: list) -> None:
    """The campaign's rewards (a treated diner's conversion) folded into the next policy state."""
    counts = learned["counts"]["all"]
    assert sum(a["trials"] for a in counts.values()) == len(treated)
    assert sum(a["successes"] for a in counts.values()) == len(converted & set(treated))
    assert (
        learned["based_on"] == "prior"
        and campaign_loop.latest_version(ctx, "spring") == (learned["state_version"])
    )
    state = campaign_loop.read_state(ctx, "spring", learned["state_version"])
    assert {v: [a.successes, a.trials] for v, a in state.counts["all"].items()} == {
        v: [a["successes"], a["trials"]] for v, a in counts.items()
    }
    assert set(learned["ope"]) == {"logged", "uniform", "greedy"}
    ips = learned["ope"]["logged"]["ips"]["value"]  # on the logging policy: the realized mean
    assert ips == pytest.approx(learned["mean_reward"], abs=1e-5)


def test_a_retry_gives_byte_identical_monitoring_output(world):
    ctx = _ctx(world["root"], DATA_DATE + dt.timedelta(days=WINDOW), world["tmp"], "m3")
    table_uri = ctx.run_path("monitoring", world["ctx"].run_key)

    def output() -> tuple[bytes, str]:
        manifest = lake.read_manifest(table_uri)
        part = lake.join(table_uri, manifest["attempt"], manifest["files"][0])
        return lake.read_bytes(part), json.dumps(manifest["figures"], sort_keys=True)

    before = output()
    again = monitor.run(
        _ctx(world["root"], ctx.data_date, world["tmp"], "m3", remonitor=True)
    ).to_xcom()
    assert again["monitored"] == [world["ctx"].run_key]
    assert output() == before
    assert monitor.run(ctx).to_xcom()["status"] == "nothing_due"  # monitored once, not again


def test_a_campaign_without_effect_is_not_reported_as_a_win(tmp_path, spark):
    """... and, rewarded on clicks, it learns from the treated diners' clicks in the window while
    the uplift stays on the label (the conversion)."""
    root = tmp_path / "lake"
    datagen.write_raw(
        datagen.generate(DINERS, seed=SEED, history_days=HISTORY), f"file://{root}", TENANT
    )
    on_clicks = {**CONFIG, "crm": {**CONFIG["crm"],
                                   "campaign": {**CONFIG["crm"]["campaign"], "reward": "click"}}}  # fmt: skip
    _, treated = _scored_and_published(root, tmp_path, _truth(), on_clicks)
    _land_outcomes(root, [])  # the offer changed nothing
    ctx = _ctx(root, DATA_DATE + dt.timedelta(days=WINDOW), tmp_path, "m1", on_clicks)
    result = monitor.run(ctx).to_xcom()
    assert result["uplift"]["verdict"] != "win", result["uplift"]
    assert result["uplift"]["ci_low"] <= 0 <= result["uplift"]["ci_high"]
    events = datagen.generate_outcomes(DINERS, days=WINDOW, seed=SEED, history_days=HISTORY)[
        "email_events"
    ]
    clicked = set(events.loc[events["event_type"] == "click", "diner_id"]) & set(treated)
    converted = set(events.loc[events["event_type"] == "conversion", "diner_id"]) & set(treated)
    learned = result["campaign"]
    counts = learned["counts"]["all"]
    assert learned["reward"] == "click" and len(clicked) > len(converted) > 0
    assert sum(a["trials"] for a in counts.values()) == len(treated)
    assert sum(a["successes"] for a in counts.values()) == len(clicked)
    state = campaign_loop.read_state(ctx, "spring", learned["state_version"])
    assert {v: a.successes for v, a in state.counts["all"].items()} == {
        v: a["successes"] for v, a in counts.items()
    }
    up = result["uplift"]  # the label's outcome: conversions, not clicks
    assert up["treated"] * up["n_treated"] == pytest.approx(len(converted), abs=1e-3)


def test_a_click_counts_only_inside_the_label_window(spark):
    """The click reward reads the model's clicks hook on the label's cut of the raw frames: a click
    before the send's day ends or after the window closes is not counted, nor another event."""
    from pyspark.sql import functions as F

    from mlmodels.customer_propensity import MODEL
    from model_steps.features import point_in_time, window
    from model_steps.model_api import ModelContext

    w = window(DATA_DATE, 1, WINDOW)
    rows = [
        ("e1", "d-before", "click", "2026-06-29T20:00:00"),  # the data date itself: before
        ("e2", "d-inside", "click", "2026-06-30T09:00:00"),  # the window's first day
        ("e3", "d-inside", "click", "2026-07-05T09:00:00"),  # a second click: one reward
        ("e4", "d-last", "click", "2026-07-13T23:59:59"),  # the window's last second
        ("e5", "d-after", "click", "2026-07-14T00:00:00"),  # the window has closed
        ("e6", "d-converted", "conversion", "2026-07-01T10:00:00"),  # not a click
    ]
    events = spark.createDataFrame(
        rows, "event_id string, diner_id string, event_type string, event_ts string"
    ).withColumn("campaign_id", F.lit("C20260630"))
    _, after = point_in_time({"email_events": events}, MODEL, w)
    mctx = ModelContext(PIPELINE, TENANT, DATA_DATE, "file:///unused", None, None, window=w)
    got = monitor.clicks(after, MODEL, mctx).to_pylist()
    assert got == [{"diner_id": "d-inside", "clicked": 1.0}, {"diner_id": "d-last", "clicked": 1.0}]
