"""Client for a CRM's batch upsert HTTP API: httpx (a pooled, thread-safe connection pool with
timeouts) for the transport, tenacity for the retry policy (bounded attempts, equal-jitter exponential
backoff, the server's Retry-After honoured).

The API it expects (docs/publish.md has the whole contract)::

    POST <base>/v1/contacts:batchUpsert
    Authorization: Bearer <token>
    Idempotency-Key: <key, stable across retries of the same batch>
    {"records": [{"contact_id": "...", "model": "...", ...}, ...]}
    -> 200 {"upserted": n, "replayed": false}          (replayed: true, or the header
                                                          Idempotent-Replayed: true, for a key seen before)
    -> 429 / 5xx (Retry-After: seconds | HTTP date)    retried with the same key
    -> 401 / 403                                        bad credentials: fail at once
    -> other 4xx                                        the batch is wrong: fail at once

The token is never logged: every message that could carry it (a response body, an exception) goes
through :func:`mask` first, and URLs are logged without user info or query.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import tenacity

from model_steps.contract import StepError

log = logging.getLogger(__name__)

BATCH_UPSERT_PATH = "/v1/contacts:batchUpsert"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
NETWORK_ERRORS = (httpx.TransportError,)  # refused, reset, timeout, dropped answer


class CrmError(StepError):
    """The CRM refused or could not take a batch; the message is safe to log (token masked)."""


class CrmAuthError(CrmError):
    pass


class CrmStopped(CrmError):
    """Sending was stopped (another batch failed, or the step is terminating)."""


def mask(text: str, *secrets: str | None) -> str:
    """``text`` with every secret (and its Bearer form) replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """A URL as it may appear in logs: scheme, host, port and path; no user info, no query."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass
class BatchOutcome:
    key: str
    records: int
    attempts: int = 0
    retries: Counter[str] = field(default_factory=Counter)  # reason ("429", "500", "network") -> n
    replayed: bool = False
    waited_seconds: float = 0.0


class _Retryable(Exception):
    """One failed attempt worth retrying: a 429/5xx (with its Retry-After) or a network error."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class CrmClient:
    """Sends batches with bounded retries; thread-safe (one httpx pool shared by the senders)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        max_connections: int = 8,
        stop: threading.Event | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(base_url)
        try:
            parts.port  # noqa: B018 - raises ValueError for "host:abc"
        except ValueError:
            parts = parts._replace(scheme="")  # refused just below
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CrmError(
                f"CRM base URL {redact_url(base_url)!r} must be http(s)://host[:port][/path]"
            )
        self.base_url = base_url
        self._url = base_url.rstrip("/") + BATCH_UPSERT_PATH
        self._token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()
        self._rng = rng
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "model-steps-publish/1",
            },
        )

    @property
    def safe_url(self) -> str:
        return redact_url(self.base_url)

    def close(self) -> None:
        self._http.close()

    # --- the API --------------------------------------------------------------------------
    def upsert_batch(self, body: bytes, key: str, records: int) -> BatchOutcome:
        """POST one batch (``body`` is the JSON request); retried with the same key until acked."""
        outcome = BatchOutcome(key=key, records=records)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retryable),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=lambda seconds: self._sleep(seconds, key),
            before_sleep=lambda state: self._note_retry(state, outcome),
        )
        try:
            for attempt in retrying:
                with attempt:
                    outcome.attempts = attempt.retry_state.attempt_number
                    self._attempt(body, key, outcome)
        except tenacity.RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, _Retryable)
            raise CrmError(
                f"batch {key[:16]}… ({records} records) still failing after "
                f"{outcome.attempts} attempts to {self.safe_url}: last {last.reason}: "
                f"{mask(last.detail, self._token)}"
            ) from None
        return outcome

    def _attempt(self, body: bytes, key: str, outcome: BatchOutcome) -> None:
        """One POST: returns when acknowledged, raises _Retryable or a final CrmError otherwise."""
        if self.stop.is_set():
            raise CrmStopped(f"batch {key[:16]}… not sent: sending was stopped")
        try:
            resp = self._http.post(self._url, content=body, headers={"Idempotency-Key": key})
        except NETWORK_ERRORS as exc:
            raise _Retryable("network", mask(f"{type(exc).__name__}: {exc}", self._token)) from None
        status = resp.status_code
        if 200 <= status < 300:
            outcome.replayed = _replayed(resp.headers, resp.content)
            return
        detail = self._excerpt(resp.content)
        if status in AUTH_STATUS:
            raise CrmAuthError(
                f"the CRM at {self.safe_url} refused the credentials (HTTP {status}: "
                f"{detail}); check CRM_API_TOKEN (locally: the Airflow connection's "
                "password; in the cluster: the Secret named like crm.connection_id, _ as -)"
            )
        if status not in RETRYABLE_STATUS:
            hint = " (lower crm.batch_size)" if status == 413 else ""
            raise CrmError(
                f"the CRM at {self.safe_url} rejected batch {key[:16]}… with HTTP "
                f"{status}{hint}: {detail}"
            )
        raise _Retryable(str(status), detail, parse_retry_after(resp.headers.get("retry-after")))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when the server sent one (capped so a bad header cannot hang us), else
        exponential backoff with "equal jitter": spread out, but never near zero."""
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, _Retryable) and failure.retry_after is not None:
            return min(failure.retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (state.attempt_number - 1))
        return ceiling * (0.5 + 0.5 * self._rng())

    def _sleep(self, seconds: float, key: str) -> None:
        if self.stop.wait(seconds):
            raise CrmStopped(f"batch {key[:16]}… not acknowledged: sending was stopped")

    def _note_retry(self, state: tenacity.RetryCallState, outcome: BatchOutcome) -> None:
        failure = state.outcome.exception() if state.outcome else None
        assert isinstance(failure, _Retryable)
        wait = state.upcoming_sleep
        outcome.retries[failure.reason] += 1
        outcome.waited_seconds += wait
        log.warning(
            "CRM batch %s…: %s%s, retry %d/%d in %.2fs",
            outcome.key[:16],
            failure.reason,
            " (Retry-After)" if failure.retry_after is not None else "",
            state.attempt_number,
            self.max_retries,
            wait,
        )

    def _excerpt(self, data: bytes) -> str:
        text = data[:300].decode("utf-8", "replace").strip() or "(empty body)"
        return mask(text, self._token)


def _replayed(headers: httpx.Headers, data: bytes) -> bool:
    if headers.get("idempotent-replayed", "").lower() == "true":
        return True
    try:
        return bool(json.loads(data or b"{}").get("replayed", False))
    except (ValueError, AttributeError):
        return False
