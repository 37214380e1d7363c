"""Client for a CRM's batch upsert HTTP API (stdlib only: http.client, one keep-alive connection per
sending thread).

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
import http.client
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from model_steps.contract import StepError

log = logging.getLogger(__name__)

BATCH_UPSERT_PATH = "/v1/contacts:batchUpsert"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
NETWORK_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timeout, dropped answer


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


class CrmClient:
    """Sends batches with bounded retries; thread-safe (each thread keeps its own connection)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 60.0,
        stop: threading.Event | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        parts = urlsplit(base_url)
        try:
            port = parts.port
        except ValueError:  # "host:abc"
            port, parts = None, parts._replace(scheme="")  # refused just below
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CrmError(
                f"CRM base URL {redact_url(base_url)!r} must be http(s)://host[:port][/path]"
            )
        self.base_url = base_url
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.stop = stop or threading.Event()
        self._rng = rng
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._connections_lock = threading.Lock()

    @property
    def safe_url(self) -> str:
        return redact_url(self.base_url)

    # --- connections ----------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self._host, self._port, timeout=self.timeout)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()

    def _post(
        self, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self._connection()
        try:
            conn.request("POST", self._prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            self._drop_connection()  # its state is unknown: the next attempt opens a new one
            raise
        if resp.will_close:
            self._drop_connection()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    # --- the API --------------------------------------------------------------------------
    def upsert_batch(self, body: bytes, key: str, records: int) -> BatchOutcome:
        """POST one batch (``body`` is the JSON request); retried with the same key until acked."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "model-steps-publish/1",
        }
        outcome = BatchOutcome(key=key, records=records)
        while True:
            if self.stop.is_set():
                raise CrmStopped(f"batch {key[:16]}… not sent: sending was stopped")
            outcome.attempts += 1
            retry_after: float | None = None
            try:
                status, resp_headers, data = self._post(BATCH_UPSERT_PATH, body, headers)
            except NETWORK_ERRORS as exc:
                reason, detail = "network", f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= status < 300:
                    outcome.replayed = _replayed(resp_headers, data)
                    return outcome
                detail = self._excerpt(data)
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
                reason = str(status)
                retry_after = parse_retry_after(resp_headers.get("retry-after"))
            if outcome.attempts > self.max_retries:
                raise CrmError(
                    f"batch {key[:16]}… ({records} records) still failing after "
                    f"{outcome.attempts} attempts to {self.safe_url}: last {reason}: "
                    f"{mask(detail, self._token)}"
                )
            wait = self._wait_seconds(outcome.attempts, retry_after)
            outcome.retries[reason] += 1
            outcome.waited_seconds += wait
            log.warning(
                "CRM batch %s…: %s%s, retry %d/%d in %.2fs",
                key[:16],
                reason,
                " (Retry-After)" if retry_after is not None else "",
                outcome.attempts,
                self.max_retries,
                wait,
            )
            if self.stop.wait(wait):
                raise CrmStopped(f"batch {key[:16]}… not acknowledged: sending was stopped")

    def _wait_seconds(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:  # the server knows best; capped so a bad header cannot hang us
            return min(retry_after, self.backoff_max)
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._rng())  # "equal jitter": spread, but never near zero

    def _excerpt(self, data: bytes) -> str:
        text = data[:300].decode("utf-8", "replace").strip() or "(empty body)"
        return mask(text, self._token)


def _replayed(headers: dict[str, str], data: bytes) -> bool:
    if headers.get("idempotent-replayed", "").lower() == "true":
        return True
    try:
        return bool(json.loads(data or b"{}").get("replayed", False))
    except (ValueError, AttributeError):
        return False
