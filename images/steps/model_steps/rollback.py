"""Automatic rollback (settings ``monitoring.auto_rollback``, off by default): the monitor's request.

When the champion's latest monitored run failed (its uplift verdict is ``harm``, or its realized
metrics miss the gate's thresholds) while the champion it replaced held (its own latest monitored
run did neither) and that one passed its gate, the monitor step asks for a rollback to it: a typed
:class:`~mlplatform_contract.results.RollbackRequest` in its result. The monitor never moves the
alias (it only reads the registry): the monitoring DAG triggers the customer's training DAG pinned
to that version with *make_champion*, actor ``automatic`` and the champion it replaces
(mlplatform.factory), so the gate makes the audited move and score and publish re-score under their
exactly-once protocol (model_steps.pinned). While a rollback is requested, no retrain is: the
next monitoring run judges the restored champion.

:func:`decide` is the whole rule, a pure function of the monitoring history, the champion history
and the versions that passed their gate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mlplatform_contract.results import MonitoredRun, RetrainDecision, RollbackRequest
from model_steps.champion import ChampionEvent

HARM = "harm"
REASON_MAX = 200  # the training DAG's reason param (mlplatform.pinning)


def previous_champion(events: Sequence[ChampionEvent], champion: str) -> str | None:
    """The version ``champion`` replaced: the from-version of the latest move to it."""
    for event in reversed(events):
        if event.to_version == champion:
            return event.from_version
    return None


def failures(run: MonitoredRun, misses: Callable[[MonitoredRun], list[str]]) -> list[str]:
    """Why a monitored run failed: a harmful uplift, realized metrics below the gate's bar."""
    found = [f"uplift verdict {HARM}"] if run.uplift.get("verdict") == HARM else []
    return found + misses(run)


def latest_of(runs: Sequence[MonitoredRun], version: str) -> MonitoredRun | None:
    own = [r for r in runs if r.model_version == version]
    return own[-1] if own else None


def _no(*reasons: str) -> RollbackRequest:
    return RollbackRequest(requested=False, reasons=list(reasons))


def decide(
    *, enabled: bool, champion: str | None, events: Sequence[ChampionEvent], passed: set[str],
    runs: Sequence[MonitoredRun], misses: Callable[[MonitoredRun], list[str]], monitor_run: str,
) -> RollbackRequest:  # fmt: skip
    """Roll back when the champion failed and the previous champion held; else why not.
    ``runs``: the monitoring history, oldest first; ``misses``: the gate thresholds a run's realized
    figures miss; ``monitor_run``: this monitoring run's key (named in the reason)."""
    if not enabled:
        return _no("monitoring.auto_rollback is off")
    if champion is None:
        return _no("no champion yet")
    latest = latest_of(runs, champion)
    failed = failures(latest, misses) if latest else []
    if not failed:
        return _no(f"champion v{champion} held" if latest else f"v{champion} not monitored yet")
    previous = previous_champion(events, champion)
    if previous is None:
        return _no(f"champion v{champion} failed but has no previous champion to roll back to")
    if previous not in passed:
        return _no(f"champion v{champion} failed but v{previous} never passed its gate")
    before = latest_of(runs, previous)
    if before is None:
        return _no(f"champion v{champion} failed but v{previous} was never monitored")
    if held := failures(before, misses):
        return _no(f"champion v{champion} failed but v{previous} failed too: {'; '.join(held)}")
    reason = (
        f"automatic rollback: v{champion} {'; '.join(failed)} on scored run "
        f"{latest.scored_run_key} (monitor run {monitor_run}); v{previous} held"
    )
    return RollbackRequest(
        requested=True, reasons=[f"{reason} on {before.scored_run_key}"], from_version=champion,
        to_version=previous, scored_run_key=latest.scored_run_key, reason=reason[:REASON_MAX],
    )  # fmt: skip


def hold_retrain(retrain: RetrainDecision, rollback: RollbackRequest) -> RetrainDecision:
    """No retrain request beside a rollback: a retrained candidate could be promoted before the
    rollback run moves the alias back; the next monitoring run judges the restored champion."""
    if not (rollback.requested and retrain.requested):
        return retrain
    reasons = [*retrain.reasons, f"retraining waits: rolling back to v{rollback.to_version}"]
    return retrain.model_copy(update={"requested": False, "reasons": reasons})


def notice(retrain: RetrainDecision, rollback: RollbackRequest) -> tuple[bool, list[str]]:
    """(degraded, reasons) of the monitor's result: what the owner's notification says
    (mlplatform.notify); a requested rollback is news to the owner, with its reason."""
    extra = rollback.reasons if rollback.requested else []
    return retrain.degraded or rollback.requested, [*retrain.reasons, *extra]


def request(ctx: Any, loaded: Any, runs: list[MonitoredRun]) -> RollbackRequest:
    """The monitor step's rollback request for this customer (reads the registry and the
    champion history only when the setting is on)."""
    if not loaded.platform.monitoring.auto_rollback:
        return _no("monitoring.auto_rollback is off")
    import mlflow

    from model_steps import champion as champion_history
    from model_steps.monitor_report import champion, degradation
    from model_steps.pinned import passed_versions
    from model_steps.tracking import registered_model_name

    current = champion(ctx)  # connects to the tracking server
    name = registered_model_name(ctx.pipeline, ctx.customer)
    passed = {str(v.version) for v in passed_versions(mlflow.MlflowClient(), name)}
    return decide(
        enabled=True, champion=current[0] if current else None,
        events=champion_history.history(ctx.layout.customer), passed=passed, runs=runs,
        misses=lambda run: degradation(loaded, run), monitor_run=ctx.run_key,
    )  # fmt: skip
