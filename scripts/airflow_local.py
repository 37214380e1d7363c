"""`make airflow`: Airflow standalone serving this repo's DAGs on the embedded platform.

Brings the embedded platform up (embedded/platform.py: local S3 endpoint, MLflow, CRM receiver and
the example data, under var/platform/), starts `airflow standalone` with the platform's environment
for every component, prints the UI's URL, the login and where the password is, and on Ctrl-C or
SIGTERM stops Airflow, then the platform, then anything left behind: no process, no open port.

Scheduled runs are off by default ([scheduler] use_job_schedule): the example data ends on
2026-06-29, so a scheduled run (data date = yesterday) could only fail, and with one active run per
customer it would hold a manual run queued behind it. `--schedules` turns them on.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "plugins"))  # mlplatform_contract (embedded/ imports it)

from embedded.platform import (  # noqa: E402  (the repo root first: embedded/ is not installed)
    DATA_DATE,
    DEFAULT_SIZE,
    Platform,
    airflow_env,
    base_env,
    embedded_platform,
)

AIRFLOW = REPO / ".venv" / "bin" / "airflow"
PR_SET_CHILD_SUBREAPER = 36
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
STATE_FILE = "airflow_local.json"


class Stop(Exception):
    """SIGTERM, turned into an exception so every ``with`` block unwinds as for Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def become_subreaper() -> None:
    """Processes orphaned below us (a component's workers, a step's process group) are re-parented
    to this process rather than to init, so the final sweep finds every one of them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def airflow_environment(platform: Platform, home: Path, args: argparse.Namespace) -> dict[str, str]:
    """The one environment of every Airflow component (and so of every step they start)."""
    port = args.port
    return {
        **base_env(),
        **airflow_env(),
        **platform.env,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__API__HOST": args.host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        # tasks call the API server on loopback by address: no ::1-first lookup of localhost
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(args.schedules),
        # a few worker processes, not 32: at most one run per customer, one task each at a time
        "AIRFLOW__CORE__PARALLELISM": "4",
        # a task's calls to the API server wait on sqlite and a busy 2-core machine: 5 s by default
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "PYTHONUNBUFFERED": "1",  # the components' output reaches the terminal as it happens
    }


def ui_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_for_ui(proc: subprocess.Popen[bytes], url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ui_answers(url):
        if proc.poll() is not None:
            raise SystemExit(
                f"airflow standalone exited with code {proc.returncode} before serving"
            )
        if time.monotonic() > deadline:
            raise SystemExit(f"the Airflow UI did not answer on {url} within {timeout:.0f}s")
        time.sleep(1)


def banner(url: str, home: Path, platform: Platform) -> str:
    dag = "customer_propensity__acme-foods"
    return "\n".join([
        "",
        f"Airflow UI:        {url}   (login: admin, password in {home / PASSWORD_FILE})",
        f"MLflow:            {platform.services['tracking_uri']}",
        f"local S3 endpoint: {platform.services['s3_endpoint']}",
        f"CRM receiver:      {platform.crm_url}",
        f"Pushgateway:       {platform.pushgateway_url or 'none (make monitoring-tools)'}",
        f"notifications:     {platform.notify_file}",
        f"lake:              {platform.lake}",
        f"Try: open {dag}, Trigger, data_date {DATA_DATE}. Ctrl-C stops everything.",
        "",
    ])  # fmt: skip


def stop_process_tree(proc: subprocess.Popen[bytes] | None, grace: float = 30.0) -> None:
    """Ask standalone to stop (SIGINT: it stops its components), then end whatever is left below
    this process: SIGTERM, and SIGKILL after ``grace`` seconds."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    leftover = psutil.Process().children(recursive=True)
    for child in leftover:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(leftover, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=5)


def serve(args: argparse.Namespace, platform: Platform) -> int:
    home = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://localhost:{args.port}"
    env = airflow_environment(platform, home, args)
    proc: subprocess.Popen[bytes] | None = None
    try:
        # its own session: a terminal's Ctrl-C reaches this script, which stops Airflow in order
        proc = subprocess.Popen([str(AIRFLOW), "standalone"], env=env, cwd=REPO,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        wait_for_ui(proc, url, args.timeout)
        state = {"pid": os.getpid(), "ui": url, "home": str(home), "password_file":
                 str(home / PASSWORD_FILE), "crm": platform.crm_url, **platform.services}  # fmt: skip
        (platform.root / STATE_FILE).write_text(json.dumps(state, indent=2, default=str))
        print(banner(url, home, platform), flush=True)
        return proc.wait()
    finally:
        # a second Ctrl-C must not cut the shutdown short and leave processes behind
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping Airflow ...", flush=True)
        stop_process_tree(proc)
        (platform.root / STATE_FILE).unlink(missing_ok=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="the API server's (UI's) port")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the API server's address (0.0.0.0 to reach the UI from elsewhere)")  # fmt: skip
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("AIRFLOW_HOME",
                        REPO / "var" / "airflow")), help="AIRFLOW_HOME (metadata DB, logs)")  # fmt: skip
    parser.add_argument("--platform", type=Path, default=REPO / "var" / "platform",
                        help="the embedded platform's folder (lake, services, CRM store)")  # fmt: skip
    parser.add_argument("--size", default=DEFAULT_SIZE, help="example data size (datagen)")
    parser.add_argument("--schedules", action="store_true", help="let the scheduler create runs")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the UI")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    become_subreaper()
    # Ctrl-C is KeyboardInterrupt even when started with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    rc = 0
    try:
        print(f"embedded platform under {args.platform} ...", flush=True)
        # every customer of the DAG modules (embedded_platform parses them, once)
        with embedded_platform(args.platform, None, size=args.size) as platform:
            if platform.generated:
                print(f"generated example data for {', '.join(platform.generated)}", flush=True)
            rc = serve(args, platform)
    except (KeyboardInterrupt, Stop):
        rc = 0
    finally:
        stop_process_tree(None, grace=10)
    print("stopped: Airflow, the embedded services and the CRM receiver", flush=True)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
