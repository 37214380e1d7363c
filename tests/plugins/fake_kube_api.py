"""A small Kubernetes API server on loopback: the endpoints the MPIJob operator calls, with faults.

It speaks real HTTP to the real kubernetes client (Airflow's KubernetesHook builds the client from a
kube_config pointing here), so retries, 409 handling and streamed logs go through the same code paths
as against an API server. It keeps MPIJobs and their launcher pods in memory; a test moves a job on
with ``set_state`` and injects faults with ``fail_next``.

Endpoints: MPIJobs (create, list by label, get, delete) under kubeflow.org/v2beta1, pods (list by
label) and pod logs (``follow``, ``timestamps``, ``sinceSeconds``) under v1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

JOBS = re.compile(
    r"^/apis/kubeflow\.org/v2beta1/namespaces/(?P<ns>[^/]+)/mpijobs(?:/(?P<name>[^/]+))?$"
)
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")
LOG = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log$")
PHASE = {"Created": "Pending", "Running": "Running", "Succeeded": "Succeeded", "Failed": "Failed"}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    after_applying: bool = False  # do the request, then answer with the error (a lost reply)


@dataclass
class FakeKube:
    """State and knobs; ``url`` is set once the server listens."""

    launcher_log: list[str] = field(default_factory=list)
    # the first follow of the launcher log drops the connection after this many lines
    drop_log_after: int | None = None
    # a follow that delivers the whole log moves the job to this state (None: stays Running)
    finish_when_logged: str | None = None
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _stamps: list[str] = field(default_factory=list)

    def fail_next(self, method: str, path: str, status: int, *, headers: dict[str, str] | None = None,
                  after_applying: bool = False) -> None:  # fmt: skip
        self.faults.append(Fault(method, re.compile(path), status, headers or {}, after_applying))

    def add_job(self, body: dict[str, Any], state: str = "Created") -> None:
        """Store a job (as the API would after a create) and give it a launcher pod."""
        body = json.loads(json.dumps(body))
        body["metadata"].setdefault("uid", f"uid-{len(self.jobs)}")
        self.jobs[body["metadata"]["name"]] = body
        self.set_state(body["metadata"]["name"], state)

    def set_state(self, name: str, state: str) -> None:
        """Conditions as the mpi-operator writes them (Created, Running, then Succeeded or Failed)."""
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [{"type": "Created", "status": "True", "lastTransitionTime": now}]
        if state != "Created":
            running = "True" if state == "Running" else "False"
            conditions.append({"type": "Running", "status": running, "lastTransitionTime": now})
        if state in ("Succeeded", "Failed"):
            conditions.append({"type": state, "status": "True", "lastTransitionTime": now})
        self.jobs[name]["status"] = {"conditions": conditions}
        self.states[name] = state

    def creates(self) -> int:
        return sum(1 for m, p in self.requests if m == "POST" and JOBS.match(p))

    def log_stamps(self) -> list[str]:
        """One RFC 3339 timestamp per log line, fixed at first use; pairs of lines share one."""
        base = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        while len(self._stamps) < len(self.launcher_log):
            i = len(self._stamps) // 2
            stamp = base + dt.timedelta(milliseconds=i)
            self._stamps.append(stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z")
        return self._stamps


def _launcher_pod(job: dict[str, Any], state: str) -> dict[str, Any]:
    name = job["metadata"]["name"]
    return {
        "metadata": {"name": f"{name}-launcher", "namespace": job["metadata"]["namespace"],
                     "labels": {"training.kubeflow.org/job-name": name,
                                "training.kubeflow.org/job-role": "launcher"}},
        "spec": {"containers": [{"name": "launcher", "image": "x"}]},
        "status": {"phase": PHASE[state]},
    }  # fmt: skip


def _stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)


def _matches(labels: dict[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(k) == v for k, v in wanted.items())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeKube

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "message": message, "code": code})  # fmt: skip

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        fake = self.fake
        with fake.lock:
            fake.requests.append((method, url.path))
            fault = next(
                (f for f in fake.faults if f.method == method and f.path.search(url.path)), None
            )
            if fault is not None:
                fake.faults.remove(fault)
        if fault is not None and not fault.after_applying:
            return self._status(fault.status, "InternalError", "injected fault")
        if fault is not None:  # apply the request, answer with the error
            self._route(method, url.path, query, body, reply=False)
            return self._send(fault.status, {"kind": "Status", "code": fault.status}, fault.headers)
        self._route(method, url.path, query, body, reply=True)

    def _route(
        self, method: str, path: str, query: dict[str, str], body: Any, *, reply: bool
    ) -> None:
        fake = self.fake
        send = self._send if reply else (lambda *a, **k: None)
        if m := JOBS.match(path):
            name = m["name"]
            if method == "POST":
                if body["metadata"]["name"] in fake.jobs:
                    return self._status(409, "AlreadyExists", "mpijobs exists") if reply else None
                body["metadata"]["namespace"] = m["ns"]
                fake.add_job(body)
                return send(201, fake.jobs[body["metadata"]["name"]])
            if method == "GET" and name is None:
                selector = query.get("labelSelector", "")
                items = [
                    j for j in fake.jobs.values() if _matches(j["metadata"]["labels"], selector)
                ]
                return send(
                    200,
                    {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJobList", "items": items},
                )
            if name not in fake.jobs:
                return self._status(404, "NotFound", f"mpijob {name} not found") if reply else None
            if method == "DELETE":
                return send(200, fake.jobs.pop(name))
            return send(200, fake.jobs[name])
        if PODS.match(path):
            pods = [_launcher_pod(j, fake.states[n]) for n, j in fake.jobs.items()]
            items = [
                p for p in pods if _matches(p["metadata"]["labels"], query.get("labelSelector", ""))
            ]
            return send(
                200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
            )
        if m := LOG.match(path):
            return self._log(m["pod"].removesuffix("-launcher"), query)
        return self._status(404, "NotFound", path)

    def _log(self, job: str, query: dict[str, str]) -> None:
        fake = self.fake
        if job not in fake.jobs:
            return self._status(404, "NotFound", f"pod {job}-launcher not found")
        stamps = fake.log_stamps()
        lines = list(zip(stamps, fake.launcher_log, strict=True))
        if "sinceSeconds" in query:
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(query["sinceSeconds"]))
            lines = [(s, t) for s, t in lines if _stamp(s) >= cutoff]
        render = [
            (f"{s} {t}" if query.get("timestamps", "").lower() == "true" else t) + "\n"
            for s, t in lines
        ]
        if query.get("follow", "").lower() != "true":
            data = "".join(render).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        drop, fake.drop_log_after = fake.drop_log_after, None
        for i, line in enumerate(render):
            if drop is not None and i == drop:
                self.wfile.write(
                    b"ff\r\npartial"
                )  # a chunk that never completes, then the socket goes
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return None
            data = line.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(0.002)
        if fake.finish_when_logged:
            fake.set_state(job, fake.finish_when_logged)
        self.wfile.write(b"0\r\n\r\n")
        return None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def serve(fake: FakeKube) -> ThreadingHTTPServer:
    """Start the server on a free loopback port (port 0: the OS picks, no race); sets fake.url."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def kube_config(url: str) -> dict[str, Any]:
    """A kubeconfig for the fake server, as an Airflow kubernetes connection's ``kube_config`` extra."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }  # fmt: skip
