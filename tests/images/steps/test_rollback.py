"""The automatic rollback's rule (model_steps.rollback.decide), a pure function: it fires when the
champion's latest monitored run failed (uplift verdict harm, or realized metrics below the gate's
thresholds) while the previous champion held, and on nothing else; and the pinned run's actor and
stale-request guard (model_steps.pinned)."""

from __future__ import annotations

import datetime as dt

import pytest

from mlplatform_contract.results import MonitoredRun, RetrainDecision
from mlplatform_contract.settings import MonitoringSettings
from model_steps import pinned
from model_steps.champion import ChampionEvent
from model_steps.contract import StepContext, UsageError
from model_steps.rollback import decide, hold_retrain, notice, previous_champion

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def event(from_version: str | None, to_version: str, day: int, actor: str = "gate"):
    return ChampionEvent(
        pipeline="p", customer="c", registered_model="p-c", from_version=from_version,
        to_version=to_version, run_key=f"run{day}", reason="r", actor=actor,
        at=T0 + dt.timedelta(days=day),
    )  # fmt: skip


def monitored(version: str, day: int, verdict: str = "no_effect_detected", auc: float = 0.8):
    return MonitoredRun(
        scored_run_key=f"scored{day}", data_date=f"2026-06-{day:02d}", model_version=version,
        registered_model="p-c", rows=1000, realized={"roc_auc": auc}, pushed={},
        uplift={"verdict": verdict},
    )  # fmt: skip


def misses(run: MonitoredRun) -> list[str]:  # the gate's threshold roc_auc >= 0.6
    auc = run.realized["roc_auc"]
    return [f"realized roc_auc {auc:.4f} misses the gate threshold 0.6"] if auc < 0.6 else []


EVENTS = [event(None, "1", 1), event("1", "2", 10)]  # v1 champion, then the gate promoted v2
HELD = monitored("1", 5)  # v1's own latest monitored run: fine


def judge(runs, *, enabled=True, champion="2", events=EVENTS, passed=("1", "2")):
    return decide(
        enabled=enabled, champion=champion, events=events, passed=set(passed), runs=runs,
        misses=misses, monitor_run="monitor_key",
    )  # fmt: skip


def test_a_harm_verdict_rolls_back_to_the_previous_champion_that_held() -> None:
    request = judge([HELD, monitored("2", 12, verdict="harm")])
    assert request.requested
    assert (request.from_version, request.to_version, request.scored_run_key) == (
        "2", "1", "scored12")  # fmt: skip
    # the reason recorded with the move names the verdict, the failed run and this monitoring run
    assert request.reason == (
        "automatic rollback: v2 uplift verdict harm on scored run scored12 "
        "(monitor run monitor_key); v1 held"
    )
    assert len(request.reason) <= 200


def test_realized_metrics_below_the_gate_roll_back_too() -> None:
    request = judge([HELD, monitored("2", 12, auc=0.55)])
    assert request.requested and "realized roc_auc 0.5500 misses" in request.reason


@pytest.mark.parametrize("verdict", ["no_effect_detected", "inconclusive", "win"])
def test_no_rollback_without_harm_or_failed_metrics(verdict: str) -> None:
    request = judge([HELD, monitored("2", 12, verdict=verdict)])
    assert not request.requested and request.reasons == ["champion v2 held"]


def test_no_rollback_when_the_previous_champion_failed_too() -> None:
    request = judge([monitored("1", 5, verdict="harm"), monitored("2", 12, verdict="harm")])
    assert not request.requested
    assert request.reasons == ["champion v2 failed but v1 failed too: uplift verdict harm"]
    request = judge([monitored("1", 5, auc=0.5), monitored("2", 12, verdict="harm")])
    assert not request.requested and "v1 failed too: realized roc_auc 0.5000" in request.reasons[0]


def test_no_rollback_when_the_setting_is_off() -> None:
    assert MonitoringSettings().auto_rollback is False  # off by default
    request = judge([HELD, monitored("2", 12, verdict="harm")], enabled=False)
    assert not request.requested and request.reasons == ["monitoring.auto_rollback is off"]


def test_no_rollback_without_a_previous_champion_that_passed_and_was_monitored() -> None:
    harm = monitored("2", 12, verdict="harm")
    first = judge([harm], events=[event(None, "2", 1)])
    assert not first.requested and "has no previous champion" in first.reasons[0]
    assert "v1 never passed its gate" in judge([HELD, harm], passed=("2",)).reasons[0]
    assert "v1 was never monitored" in judge([harm]).reasons[0]
    assert judge([HELD, harm], champion=None).reasons == ["no champion yet"]
    assert judge([HELD]).reasons == ["v2 not monitored yet"]


def test_the_latest_run_of_each_version_counts_and_a_rollback_does_not_bounce_back() -> None:
    # v2 recovered on its latest run: no rollback for an older harm
    runs = [HELD, monitored("2", 11, verdict="harm"), monitored("2", 12)]
    assert not judge(runs).requested
    # after the automatic rollback to v1, v1 failing is not a reason to go back to v2 (it failed)
    events = [*EVENTS, event("2", "1", 13, actor="automatic")]
    runs = [HELD, monitored("2", 12, verdict="harm"), monitored("1", 20, verdict="harm")]
    assert previous_champion(events, "1") == "2"
    request = judge(runs, champion="1", events=events)
    assert not request.requested and "v2 failed too" in request.reasons[0]


def test_a_retrain_request_waits_while_a_rollback_is_requested() -> None:
    retrain = RetrainDecision(requested=True, degraded=True, reasons=["realized roc_auc misses"])
    request = judge([HELD, monitored("2", 12, verdict="harm")])
    held = hold_retrain(retrain, request)
    assert not held.requested and held.degraded
    assert held.reasons[-1] == "retraining waits: rolling back to v1"
    assert hold_retrain(retrain, judge([HELD, monitored("2", 12)])) is retrain


def test_the_owner_is_told_of_a_requested_rollback() -> None:
    healthy = RetrainDecision(requested=False, reasons=["champion v2 is healthy"])
    request = judge([HELD, monitored("2", 12, verdict="harm")])
    degraded, reasons = notice(healthy, request)  # harm alone misses no threshold: still news
    assert degraded and reasons[-1].startswith("automatic rollback: v2 uplift verdict harm")
    assert notice(healthy, judge([HELD, monitored("2", 12)])) == (False, healthy.reasons)


def _ctx(**params) -> StepContext:
    return StepContext(step="evaluate", pipeline="p", customer="c", run_id="r",
                       data_date=dt.date(2026, 6, 1), params=params)  # fmt: skip


def test_the_pinned_run_records_who_asks_and_refuses_a_stale_request() -> None:
    assert pinned.actor(_ctx()) == "operator"
    assert pinned.actor(_ctx(actor="automatic")) == "automatic"
    with pytest.raises(UsageError, match="neither operator nor automatic"):
        pinned.actor(_ctx(actor="root"))
    assert pinned.stale(_ctx(), "5") is None  # an operator's rollback: always
    assert pinned.stale(_ctx(replaces_version="2"), "2") is None
    why = pinned.stale(_ctx(replaces_version="2"), "3")
    assert why is not None and "replaces v2 but the champion is now v3" in why
