"""The trigger an MPIJob task defers to: polls the job's conditions in the triggerer until it ends.

A multi-hour training then holds no worker slot, and a restarted triggerer simply runs the trigger
again from its serialized arguments (name, deadlines): nothing is lost or started twice. The blocking
kubernetes client runs in a thread (``asyncio.to_thread``) with the same retried calls the operator
uses, so the trigger shares its retry policy rather than having its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from mlplatform.runtime.mpijob_api import MPIJobApi, connect, job_started, job_state


class MPIJobTrigger(BaseTrigger):
    """Fires once with ``{"name", "state"}``: Succeeded, Failed, Deleted, NotStarted or TimedOut
    (or Error with a message when the API keeps failing past its retries)."""

    def __init__(
        self, *, name: str, namespace: str, kubernetes_conn_id: str, poll_interval: float,
        startup_deadline: str, deadline: str,
    ) -> None:  # fmt: skip
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_interval = poll_interval
        self.startup_deadline = startup_deadline
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "poll_interval": self.poll_interval,
                "startup_deadline": self.startup_deadline,
                "deadline": self.deadline,
            },
        )

    def _state(self, api: MPIJobApi) -> str:
        job = api.get(self.name)
        if job is None:
            return "Deleted"
        state = job_state(job.get("status"))
        now = dt.datetime.now(dt.UTC)
        if state == "Running" and not job_started(job.get("status")):
            if now > dt.datetime.fromisoformat(self.startup_deadline):
                return "NotStarted"
        elif state == "Running" and now > dt.datetime.fromisoformat(self.deadline):
            return "TimedOut"
        return state

    async def run(self) -> AsyncIterator[TriggerEvent]:
        api = await asyncio.to_thread(lambda: MPIJobApi(connect(self.kubernetes_conn_id),
                                                        self.namespace))  # fmt: skip
        while True:
            try:
                state = await asyncio.to_thread(self._state, api)
            except Exception as exc:  # retries exhausted or a non-transient error (403, ...)
                yield TriggerEvent({"name": self.name, "state": "Error", "message": str(exc)})
                return
            if state != "Running":
                self.log.info("MPIJob %s/%s: %s", self.namespace, self.name, state)
                yield TriggerEvent({"name": self.name, "state": state})
                return
            await asyncio.sleep(self.poll_interval)
