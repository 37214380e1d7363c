"""Notifications to a pipeline's owner: a failed task, or a degraded model.

Every task gets :func:`callbacks` (factory.build_dag's ``default_args``):

* ``on_failure_callback``: the task failed for good (retries spent, or a non-retryable exit);
* ``on_success_callback`` / ``on_skipped_callback``: a step that judges a model (:data:`JUDGES`)
  reported it degraded: an ``EvaluateResult`` with ``passed`` false (the gate rejected the candidate
  and scoring went on with the champion), a ``MonitorResult`` with ``degraded`` true
  (mlplatform_contract.results), or the gate skipped downstream (exit 99).

Where notifications go is configured per owner (the spec's ``owner``), in the JSON of
``MLOPS_NOTIFY_OWNERS``: ``{"<owner>" or "*": {"email": ["a@x"], "smtp_conn_id": "smtp_default"}}``
adds the SMTP provider's ``SmtpNotifier`` (installed with Airflow here). Always on:
:class:`LocalNotifier`, which writes the notification to the task log and, when
``MLOPS_NOTIFY_FILE`` is set (the embedded platform sets it), appends it as one JSON line to that
file, which ``make run``'s summary shows.

No ML imports and no I/O at parse time: notifiers are built once per owner and only read the
task's XCom when a judging step has ended.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from pathlib import Path
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from mlplatform_contract.environment import control_plane
from mlplatform_contract.results import EvaluateResult, MonitorResult, parse_result

log = logging.getLogger(__name__)

ENV_NOTIFY_FILE = "MLOPS_NOTIFY_FILE"
ENV_NOTIFY_OWNERS = "MLOPS_NOTIFY_OWNERS"
JUDGES = frozenset({"evaluate", "monitor"})  # steps whose result says whether the model is healthy


def degraded_reason(step: str, payload: Any) -> str | None:
    """Why a judging step's result (its XCom) means the model is degraded, or None when healthy."""
    if not isinstance(payload, dict):
        return None
    result = parse_result(step, payload)
    if isinstance(result, EvaluateResult) and not result.passed:
        return "; ".join(result.reasons) or result.reason or "no reason given"
    if isinstance(result, MonitorResult) and result.degraded:
        return "; ".join(result.reasons) or "no reason given"
    return None


def describe(context: Any, event: str) -> dict[str, Any] | None:
    """The notification for ``event`` (failed | degraded | skipped) of this task, or None."""
    ti = context.get("ti") or context.get("task_instance")
    dag_id, task_id = getattr(ti, "dag_id", "?"), getattr(ti, "task_id", "?")
    if event == "failed":
        reason = str(context.get("exception") or "the task failed")
    elif task_id not in JUDGES:
        return None
    elif event == "skipped":  # exit 99 leaves no XCom; the reason is in the task log
        event, reason = "degraded", "the gate skipped everything downstream (see the task log)"
    else:
        reason = degraded_reason(task_id, ti.xcom_pull(task_ids=task_id, key="return_value"))
        if reason is None:
            return None
    task = context.get("task")
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "event": event,
        "owner": getattr(task, "owner", None),
        "dag_id": dag_id,
        "task_id": task_id,
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "reason": reason[-2000:],
    }


class LocalNotifier(BaseNotifier):
    """The task log, plus one JSON line in ``$MLOPS_NOTIFY_FILE`` when it is set."""

    def __init__(self, event: str, then: tuple[BaseNotifier, ...] = ()):
        super().__init__()
        self.event, self.then = event, then

    def notify(self, context: Any) -> None:
        note = describe(context, self.event)
        if note is None:
            return
        self.log.warning("notification to owner %s: %s", note["owner"], json.dumps(note))
        path = control_plane().notify_file
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as out:  # one short write: lines stay whole
                out.write(json.dumps(note, sort_keys=True) + "\n")
        for notifier in self.then:  # the owner's own channels hear only of real events
            notifier(context)


def owner_channels(owner: str, event: str) -> tuple[BaseNotifier, ...]:
    """The owner's configured channels (``MLOPS_NOTIFY_OWNERS``), as provider notifiers."""
    raw = control_plane().notify_owners
    if not raw:
        return ()
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{ENV_NOTIFY_OWNERS} is not JSON: {exc}") from None
    entry = config.get(owner) or config.get("*") or {}
    if not entry.get("email"):
        return ()
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    subject = "[mlops] {{ ti.dag_id }}.{{ ti.task_id }}: " + event
    return (SmtpNotifier(to=entry["email"], smtp_conn_id=entry.get("smtp_conn_id"),
                         subject=subject, html_content=f"{{{{ ti.dag_id }}}} {event}: "
                         "{{ exception or 'see the task log' }}"),)  # fmt: skip


@functools.cache
def callbacks(owner: str) -> dict[str, Any]:
    """The task callbacks for a pipeline of ``owner`` (built once per owner and process)."""
    failed = LocalNotifier("failed", owner_channels(owner, "failed"))
    channels = owner_channels(owner, "degraded")
    return {
        "on_failure_callback": failed,
        "on_success_callback": LocalNotifier("degraded", channels),
        "on_skipped_callback": LocalNotifier("skipped", channels),
    }
