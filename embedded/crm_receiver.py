"""A local stand-in for the CRM's batch upsert API (embedded default and tests), stdlib only.

    python -m embedded.crm_receiver --db var/crm.sqlite --port 8765 \
        [--token T] [--fail-first N --fail-status 429|500|503 --retry-after S] [--delay-ms D]

It listens on 127.0.0.1 only and keeps what it receives in sqlite:

* ``POST /v1/contacts:batchUpsert`` with ``Authorization: Bearer <token>`` and ``Idempotency-Key``,
  body ``{"records": [{"contact_id": "...", "model": "...", ...}, ...]}``. Records are upserted by
  (``model``, ``contact_id``): each model owns its fields of a contact; every other field of the
  record is kept as the contact's attributes (JSON). The idempotency key is stored with the
  request's hash in the same transaction, so a repeated key (a client's retry after a lost answer)
  is answered from the store (``Idempotent-Replayed: true``) and applies nothing twice. The same
  key with another body is refused (422).
* ``GET /v1/contacts?limit=N&after=ID[&model=M]``: the count and a page of records, ordered by
  ``contact_id`` (within one model when ``model`` is given).
* ``GET /_stats``: contacts, writes (how many times records were applied: ``duplicate_writes`` is
  ``writes - contacts`` when every record should be written once), batches, request counters.
* ``GET|POST /_control``: read or switch the fault injection at run time, e.g.
  ``{"fail_next": 5, "fail_status": 429, "retry_after": 1, "delay_ms": 200, "drop_ack_next": 1}``,
  or ``{"reset": true}`` to empty the store and the counters. ``drop_ack_next`` applies the batch
  and then closes the connection without answering: the lost acknowledgement a client must survive.

Faults apply to batch upserts only, after the token check: a 429/503 answer carries ``Retry-After``
when ``retry_after`` is set.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

log = logging.getLogger("crm_receiver")

HOST = "127.0.0.1"  # loopback only, always
DEFAULT_TOKEN = "local-crm-token"
BATCH_PATH = "/v1/contacts:batchUpsert"
MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_BATCH_RECORDS = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    model TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    model_version TEXT,
    run_key TEXT,
    extra TEXT,  -- the record's other fields (the model's attributes), as JSON (NULL when none)
    writes INTEGER NOT NULL,  -- how many times a record for this contact and model was applied
    updated_at REAL NOT NULL,
    PRIMARY KEY (model, contact_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key TEXT PRIMARY KEY,
    request_sha256 TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

COLUMNS = ("model", "contact_id", "model_version", "run_key")
KEY_COLUMNS = ("model", "contact_id")
_COLUMN_SET = frozenset(COLUMNS)
COUNTERS = ("requests", "applied", "replayed", "faults", "dropped_acks", "unauthorized", "rejected")


def _row(r: dict[str, Any], now: float) -> tuple[Any, ...]:
    extra = None
    if not r.keys() <= _COLUMN_SET:
        extra = json.dumps({k: v for k, v in r.items() if k not in _COLUMN_SET})
    return (r["model"], r["contact_id"], r.get("model_version"), r.get("run_key"), extra, now)


class Store:
    """sqlite behind one lock: every batch is one transaction (upserts + its idempotency key)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def apply_batch(
        self, key: str, request_sha256: str, records: list[dict[str, Any]]
    ) -> tuple[int, dict[str, Any]]:
        """(HTTP status, response body) for one batch, applied at most once per key."""
        with self._lock:
            row = self._db.execute(
                "SELECT request_sha256, response FROM idempotency_keys WHERE key = ?", (key,)
            ).fetchone()
            if row is not None:
                if row[0] != request_sha256:
                    return 422, {
                        "error": "idempotency_key_reused",
                        "message": "this Idempotency-Key was used with a different request body",
                    }
                return 200, {**json.loads(row[1]), "replayed": True}
            now = time.time()
            response = {"upserted": len(records), "replayed": False}
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    f"INSERT INTO contacts ({', '.join(COLUMNS)}, extra, writes, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT(model, contact_id) DO UPDATE SET "
                    + ", ".join(
                        f"{c} = excluded.{c}" for c in (*COLUMNS[2:], "extra", "updated_at")
                    )
                    + ", writes = contacts.writes + 1",
                    [_row(r, now) for r in records],
                )
                self._db.execute(
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?)",
                    (key, request_sha256, json.dumps(response), now),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return 200, response

    def page(self, limit: int, after: str, model: str | None = None) -> dict[str, Any]:
        where, args = ("WHERE model = ?", [model]) if model else ("", [])
        with self._lock:
            count = self._db.execute(f"SELECT COUNT(*) FROM contacts {where}", args).fetchone()[0]
            rows = self._db.execute(
                f"SELECT {', '.join(COLUMNS)}, extra, writes FROM contacts "
                f"{where + ' AND' if where else 'WHERE'} contact_id > ? "
                "ORDER BY contact_id, model LIMIT ?",
                (*args, after, limit),
            ).fetchall()
        n = len(COLUMNS)
        records = [
            {**dict(zip(COLUMNS, r[:n], strict=True)), **json.loads(r[n] or "{}"), "_writes": r[-1]}
            for r in rows
        ]
        return {
            "count": count,
            "records": records,
            "next": records[-1]["contact_id"] if records else None,
        }

    def stats(self) -> dict[str, Any]:
        with self._lock:
            contacts, writes, max_writes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(writes), 0), COALESCE(MAX(writes), 0) FROM contacts"
            ).fetchone()
            batches = self._db.execute("SELECT COUNT(*) FROM idempotency_keys").fetchone()[0]
        return {
            "contacts": contacts,
            "writes": writes,
            "duplicate_writes": writes - contacts,
            "max_writes_per_contact": max_writes,
            "batches": batches,
        }

    def reset(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM contacts")
            self._db.execute("DELETE FROM idempotency_keys")


class Faults:
    """The switches tests flip at run time (and the CLI sets at start)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.fail_next = 0
        self.fail_status = 429
        self.retry_after: float | None = None
        self.delay_ms = 0
        self.drop_ack_next = 0
        self.counters = dict.fromkeys(COUNTERS, 0)

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            for name in ("fail_next", "fail_status", "delay_ms", "drop_ack_next"):
                if name in changes:
                    setattr(self, name, int(changes[name]))
            if "retry_after" in changes:
                ra = changes["retry_after"]
                self.retry_after = None if ra is None else float(ra)
            if changes.get("reset"):
                self.counters = dict.fromkeys(COUNTERS, 0)
            return self.state()

    def state(self) -> dict[str, Any]:
        return {
            "fail_next": self.fail_next,
            "fail_status": self.fail_status,
            "retry_after": self.retry_after,
            "delay_ms": self.delay_ms,
            "drop_ack_next": self.drop_ack_next,
            "counters": dict(self.counters),
        }

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def take_failure(self) -> tuple[int, float | None] | None:
        with self._lock:
            if self.fail_next <= 0:
                return None
            self.fail_next -= 1
            self.counters["faults"] += 1
            return self.fail_status, self.retry_after

    def take_drop(self) -> bool:
        with self._lock:
            if self.drop_ack_next <= 0:
                return False
            self.drop_ack_next -= 1
            self.counters["dropped_acks"] += 1
            return True


class CrmServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, store: Store, token: str, faults: Faults) -> None:
        super().__init__((HOST, port), Handler)
        self.store = store
        self.token = token
        self.faults = faults

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's connection serves many batches
    # Headers and body are two writes: without TCP_NODELAY, Nagle + the client's delayed ACK add
    # ~40 ms to every answer, which would measure the TCP stack, not the client.
    disable_nagle_algorithm = True
    server: CrmServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # --- plumbing -------------------------------------------------------------------------
    def _send(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, {"error": "payload_too_large", "max_bytes": MAX_BODY_BYTES})
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.token}"
        if hmac.compare_digest(given.encode(), expected.encode()):
            return True
        self.server.faults.count("unauthorized")
        self._send(401, {"error": "unauthorized", "message": "missing or invalid bearer token"})
        return False

    # --- routes ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/_stats":
            return self._send(
                200,
                {**self.server.store.stats(), "counters": self.server.faults.state()["counters"]},
            )
        if url.path == "/_control":
            return self._send(200, self.server.faults.state())
        if url.path == "/healthz":
            return self._send(200, {"ok": True})
        if url.path == "/v1/contacts":
            if not self._authorized():
                return None
            q = parse_qs(url.query)
            limit = min(int(q.get("limit", ["1000"])[0]), 100_000)
            after, model = q.get("after", [""])[0], q.get("model", [None])[0]
            return self._send(200, self.server.store.page(limit, after, model))
        return self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        path = urlparse(self.path).path
        body = self._body()
        if body is None:
            return None
        if path == "/_control":
            try:
                changes = json.loads(body or b"{}")
            except ValueError:
                return self._send(400, {"error": "bad_json"})
            if changes.get("reset"):
                self.server.store.reset()
            return self._send(200, self.server.faults.update(changes))
        if path == BATCH_PATH:
            return self._batch_upsert(body)
        return self._send(404, {"error": "not_found"})

    def _batch_upsert(self, body: bytes) -> None:
        faults = self.server.faults
        faults.count("requests")
        if not self._authorized():
            return None
        failure = faults.take_failure()
        if failure is not None:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            log.info("injected fault: answering %d", status)
            return self._send(status, {"error": "injected_fault", "status": status}, headers)
        delay_ms = faults.delay_ms
        if delay_ms:
            time.sleep(delay_ms / 1000)
        key = self.headers.get("Idempotency-Key", "").strip()
        if not key or len(key) > 255:
            faults.count("rejected")
            return self._send(400, {"error": "idempotency_key_required"})
        try:
            payload = json.loads(body)
            records = payload["records"]
            if not isinstance(records, list) or not all(
                isinstance(r, dict) and all(isinstance(r.get(k), str) and r[k] for k in KEY_COLUMNS)
                for r in records
            ):
                raise ValueError(
                    "records must be objects with non-empty string contact_id and model"
                )
        except (ValueError, KeyError, TypeError) as exc:
            faults.count("rejected")
            return self._send(400, {"error": "bad_request", "message": str(exc)[:200]})
        if len(records) > MAX_BATCH_RECORDS:
            faults.count("rejected")
            return self._send(413, {"error": "batch_too_large", "max_records": MAX_BATCH_RECORDS})
        status, response = self.server.store.apply_batch(
            key, hashlib.sha256(body).hexdigest(), records
        )
        if status == 200:
            faults.count("replayed" if response["replayed"] else "applied")
        if status == 200 and faults.take_drop():
            log.info("injected fault: batch %s applied, answer dropped", key[:16])
            self.close_connection = True
            return None  # nothing written: the client sees the connection close
        headers = {"Idempotent-Replayed": "true"} if response.get("replayed") else {}
        return self._send(status, response, headers)


def serve(
    db: str, port: int = 0, token: str = DEFAULT_TOKEN, **faults: Any
) -> tuple[CrmServer, threading.Thread]:
    """Start a receiver in this process (a daemon thread); ``server.shutdown()`` stops it."""
    f = Faults()
    f.update(faults)
    server = CrmServer(port, Store(db), token, f)
    thread = threading.Thread(target=server.serve_forever, name="crm-receiver", daemon=True)
    thread.start()
    return server, thread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embedded.crm_receiver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--db", required=True, help="sqlite file (created if missing)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--token", default=os.environ.get("CRM_RECEIVER_TOKEN", DEFAULT_TOKEN),
                   help="accepted bearer token (default: $CRM_RECEIVER_TOKEN or the local one)")  # fmt: skip
    p.add_argument(
        "--fail-first", type=int, default=0, help="answer the first N batches with a fault"
    )
    p.add_argument("--fail-status", type=int, default=429, choices=(429, 500, 502, 503))
    p.add_argument("--retry-after", type=float, default=None, help="Retry-After seconds on faults")
    p.add_argument("--delay-ms", type=int, default=0, help="added latency per batch")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    if os.path.dirname(args.db):
        os.makedirs(os.path.dirname(args.db), exist_ok=True)
    faults = Faults()
    faults.update({"fail_next": args.fail_first, "fail_status": args.fail_status,
                   "retry_after": args.retry_after, "delay_ms": args.delay_ms})  # fmt: skip
    server = CrmServer(args.port, Store(args.db), args.token, faults)
    print(f"crm receiver listening on {server.url} (db {args.db})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
