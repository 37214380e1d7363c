"""The embedded Pushgateway: where the steps push their metrics on this machine (loopback only).

The binary is Debian's ``prometheus-pushgateway``, unpacked into ``.tools/prometheus`` by
``make monitoring-tools`` (or any ``pushgateway`` on PATH). Where it is absent the platform runs
without one: the steps then log that no gateway is configured and push nothing.

Like the other embedded services it binds port 0 and reports the port it got in its log, and it
keeps its groups in a persistence file under the platform root, so a restart does not forget the
last success of each step.

Stdlib only (the control plane's venv runs it).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from embedded import services

REPO = Path(__file__).resolve().parents[1]
TOOLS_BIN = REPO / ".tools" / "prometheus" / "usr" / "bin"
NAMES = ("prometheus-pushgateway", "pushgateway")
BOUND = re.compile(r'msg="Listening on" address=127\.0\.0\.1:(\d+)')
INSTALL_HINT = (
    "run `make monitoring-tools` (Debian's prometheus-pushgateway into .tools/prometheus)"
)


def binary() -> Path | None:
    """The Pushgateway executable: .tools/prometheus first, then PATH; None when there is none."""
    for name in NAMES:
        if (TOOLS_BIN / name).exists():
            return TOOLS_BIN / name
    found = next((shutil.which(n) for n in NAMES if shutil.which(n)), None)
    return Path(found) if found else None


def groups(url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The metric groups the gateway holds (its /api/v1/metrics), each with its grouping labels."""
    with urllib.request.urlopen(f"{url}/api/v1/metrics", timeout=timeout) as resp:
        return json.load(resp)["data"]


@contextmanager
def pushgateway(root: Path, *, timeout: float = 30.0) -> Iterator[str | None]:
    """A Pushgateway on a free loopback port, persisting to ``root/pushgateway.metrics``; yields
    its URL, or None when no binary is installed. Stopped when the block ends."""
    exe = binary()
    if exe is None:
        yield None
        return
    log = root / "logs" / "pushgateway.log"
    log.unlink(missing_ok=True)
    services.BOUND_PORT.setdefault("pushgateway", BOUND)
    command = [str(exe), "--web.listen-address=127.0.0.1:0",
               f"--persistence.file={root / 'pushgateway.metrics'}", "--persistence.interval=5s"]  # fmt: skip
    proc = services._spawn(command, {}, log)
    try:
        port = services.bound_port("pushgateway", proc, log, timeout)
        url = f"http://127.0.0.1:{port}"
        services._wait_ready("pushgateway", f"{url}/-/ready", proc, log, timeout)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)  # it writes its persistence file on the way out
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
