"""The few Kubernetes API calls the MPIJob operator and its trigger make, each retried on transient errors.

Retries are the cncf provider's own policy (``generic_api_retry``: 429/5xx and connection errors,
exponential backoff, Retry-After honoured, ``[workers] api_retries`` attempts), so a training job
survives an API server restart or a throttling burst the same way the provider's pod operator does.
Create is the one call that is not idempotent: a 500 may hide a create that happened, so its retry
treats 409 AlreadyExists as success and reads the job back instead of retrying the conflict.

Imported only when a task runs (never at DAG parse): the provider's helpers pull in aiohttp and the
async client.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import tenacity
from airflow.providers.cncf.kubernetes.kubernetes_helper_functions import (
    API_RETRIES,
    TRANSIENT_CONNECTION_ERRORS,
    WaitRetryAfterOrExponential,
    generic_api_retry,
)
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "kubeflow.org", "v2beta1", "mpijobs"
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
JOB_ROLE_LABEL = "training.kubeflow.org/job-role"
log = logging.getLogger(__name__)


def _transient_create_error(exc: BaseException) -> bool:
    """Like the provider's predicate, minus 409: a conflict on create means the job exists."""
    if isinstance(exc, ApiException):
        return exc.status in {429, 500, 502, 503, 504}
    return isinstance(exc, TRANSIENT_CONNECTION_ERRORS)


_create_retry = tenacity.retry(
    stop=tenacity.stop_after_attempt(API_RETRIES),
    wait=WaitRetryAfterOrExponential(),
    retry=tenacity.retry_if_exception(_transient_create_error),
    reraise=True,
    before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
)


def connect(kubernetes_conn_id: str) -> ApiClient:
    """The API client of an Airflow kubernetes connection (in-cluster in production)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=kubernetes_conn_id).api_client


@dataclass
class MPIJobApi:
    """MPIJobs and their launcher pod in one namespace."""

    api_client: ApiClient
    namespace: str
    custom: CustomObjectsApi = field(init=False)
    core: CoreV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.custom = CustomObjectsApi(self.api_client)
        self.core = CoreV1Api(self.api_client)

    @_create_retry
    def _create_once(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create the job; if it already exists (a retried create, a racing worker), return it."""
        try:
            return self._create_once(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            log.info("MPIJob %s already exists; adopting it", body["metadata"]["name"])
            found = self.get(body["metadata"]["name"])
            if found is None:
                raise
            return found

    @generic_api_retry
    def get(self, name: str) -> dict[str, Any] | None:
        """The job, or None once it is gone."""
        try:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    @generic_api_retry
    def find(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Jobs carrying all these labels (a task's earlier tries)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        found = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, label_selector=selector
        )
        return list(found.get("items") or [])

    @generic_api_retry
    def delete(self, name: str) -> None:
        """Delete the job and, in the foreground, its pods; a job already gone is fine."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    @generic_api_retry
    def launcher_pod(self, name: str) -> Any | None:
        """The job's launcher pod (V1Pod), or None while the operator has not created it."""
        selector = f"{JOB_NAME_LABEL}={name},{JOB_ROLE_LABEL}=launcher"
        found = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return found[0] if found else None

    @generic_api_retry
    def read_log(self, pod: str) -> list[str]:
        """A (finished) pod's whole log. Raw bytes: the client would json-decode a log that happens
        to parse as JSON and hand back its Python repr."""
        response = self.core.read_namespaced_pod_log(pod, self.namespace, _preload_content=False)
        return response.data.decode(errors="replace").splitlines()

    def follow_log(
        self, pod: str, is_running: Callable[[], bool], max_breaks: int = 20
    ) -> Iterator[str]:
        """Yield the pod's log lines while it runs, resuming after a broken stream.

        Lines are read with timestamps; after a break the stream reopens ``sinceSeconds`` just before
        the last line seen and skips what was already yielded, so no line is lost or repeated.
        """
        cursor = _LogCursor()
        for _attempt in range(max_breaks + 1):
            try:
                yield from cursor.new_lines(self._open_log(pod, cursor.since_seconds()))
                if not is_running():
                    return
            except (*TRANSIENT_CONNECTION_ERRORS, ApiException) as exc:
                log.warning("launcher log stream of %s broke (%s); resuming", pod, exc)
        log.warning("launcher log of %s broke %d times; giving up following it", pod, max_breaks)

    @generic_api_retry
    def _open_log(self, pod: str, since_seconds: int | None) -> Iterator[str]:
        response = self.core.read_namespaced_pod_log(
            pod, self.namespace, follow=True, timestamps=True,
            since_seconds=since_seconds, _preload_content=False,
        )  # fmt: skip
        return _lines(response)


def _lines(response: Any) -> Iterator[str]:
    """Complete lines of a streamed HTTP response (a line may span chunks)."""
    pending = b""
    for chunk in response.stream(amt=64 * 1024):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


@dataclass
class _LogCursor:
    """Where a timestamped log stream got to: the last timestamp and how many lines carried it."""

    last: dt.datetime | None = None
    seen_at_last: int = 0

    def since_seconds(self) -> int | None:
        if self.last is None:
            return None
        age = (dt.datetime.now(dt.UTC) - self.last).total_seconds()
        return max(1, math.ceil(age) + 10)  # a margin for clock skew; new_lines drops the overlap

    def new_lines(self, lines: Iterator[str]) -> Iterator[str]:
        """Strip the timestamps, skipping lines at or before the cursor that were already yielded."""
        repeat_at_last = 0
        for line in lines:
            stamp_text, _, text = line.partition(" ")
            stamp = _parse_stamp(stamp_text)
            if stamp is None:  # not a timestamped line: pass it through
                yield line
                continue
            if self.last is not None and stamp < self.last:
                continue
            if self.last is not None and stamp == self.last:
                repeat_at_last += 1
                if repeat_at_last <= self.seen_at_last:
                    continue
                self.seen_at_last += 1
                yield text
                continue
            self.last, self.seen_at_last, repeat_at_last = stamp, 1, 1
            yield text


def _parse_stamp(text: str) -> dt.datetime | None:
    """Kubernetes log timestamps are RFC 3339 with nanoseconds (``2026-12-01T08:00:00.123456789Z``)."""
    if not text.endswith("Z") or "T" not in text:
        return None
    head, _, frac = text[:-1].partition(".")
    try:
        stamp = dt.datetime.fromisoformat(head).replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return stamp + dt.timedelta(microseconds=int((frac or "0")[:6].ljust(6, "0")))


# What an MPIJob's status says: read by the operator and by its deferred trigger alike.
def job_state(status: dict[str, Any] | None) -> str:
    """'Succeeded', 'Failed' or 'Running' from the MPIJob's conditions (last true one wins)."""
    for condition in reversed((status or {}).get("conditions") or []):
        if condition.get("status") == "True" and condition.get("type") in ("Succeeded", "Failed"):
            return str(condition["type"])
    return "Running"


def job_started(status: dict[str, Any] | None) -> bool:
    """Whether the job got past scheduling: its launcher ran (Running) or it already ended."""
    return any(
        c.get("status") == "True" and c.get("type") in ("Running", "Succeeded", "Failed")
        for c in (status or {}).get("conditions") or []
    )
