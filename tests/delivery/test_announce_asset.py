"""ci/announce_asset.py against a loopback stand-in of Airflow's REST API (the two endpoints it
calls): the asset is looked up by URI, one event is posted with the extra, the token is sent."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "ci" / "announce_asset.py"


@pytest.fixture
def airflow_api():
    seen: list[tuple[str, str, dict | None, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(("GET", self.path, None, self.headers["Authorization"]))
            assets = [{"id": 7, "uri": "mlops://images/manifest"},
                      {"id": 8, "uri": "mlops://images/manifest-old"}]  # fmt: skip
            self._reply({"assets": assets, "total_entries": 2})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(("POST", self.path, body, self.headers["Authorization"]))
            self._reply({"id": 42, "timestamp": "2026-12-01T00:00:00Z", **body})

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_posts_one_event_on_the_asset_found_by_uri(airflow_api):
    url, seen = airflow_api
    env = {"AIRFLOW_API_URL": url, "AIRFLOW_API_TOKEN": "jwt-123", "PATH": "/usr/bin"}
    done = _run(env, "mlops://images/manifest", "--extra", "commit=abc")
    assert done.returncode == 0, done.stderr
    assert "announced mlops://images/manifest: event 42" in done.stdout
    (get, post) = seen
    assert get[1].startswith("/api/v2/assets?uri_pattern=mlops%3A%2F%2Fimages%2Fmanifest")
    assert post[:3] == (
        "POST",
        "/api/v2/assets/events",
        {"asset_id": 7, "extra": {"commit": "abc"}},
    )
    assert get[3] == post[3] == "Bearer jwt-123"


def test_an_unknown_asset_is_an_error_and_no_configuration_is_a_skip(airflow_api):
    url, _ = airflow_api
    env = {"AIRFLOW_API_URL": url, "AIRFLOW_API_TOKEN": "t", "PATH": "/usr/bin"}
    done = _run(env, "mlops://raw/nobody")
    assert done.returncode != 0 and "knows no asset mlops://raw/nobody" in done.stderr
    done = _run({"PATH": "/usr/bin"}, "mlops://images/manifest")
    assert done.returncode == 0 and "not announced" in done.stdout
