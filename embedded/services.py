"""Start and stop the embedded services of the local default, all on loopback.

* ``moto_server``: a local S3 endpoint (MLflow's artifact store, the S3 sinks of later steps);
* ``mlflow server``: tracking + model registry, sqlite backend, artifacts proxied by the server into
  ``s3://mlflow-artifacts/`` on that endpoint (clients upload through the server, so a step needs
  only ``MLFLOW_TRACKING_URI`` and its credentials). Like the cluster's, it runs MLflow's basic-auth
  app with ``default_permission = NO_PERMISSIONS``: the admin password is generated on the first
  start and kept in ``<state>/auth/admin.json`` (mode 0600) with the users database beside it; the
  step identities are granted by ``model_steps.registry_admin`` (docs/registry-access.md).

The endpoint (moto) keeps its objects in memory, so ``down`` first saves every bucket to
``<state>/s3/<bucket>/<key>`` and ``up`` loads them back: the models, reports and scores of a run
stay readable on disk after it (``make mlflow-ui`` serves the registry with those files), and the
registry in ``<state>/mlflow.db`` keeps matching its artifacts across restarts.

    python -m embedded.services up --state var/services     # prints the env, writes services.json/.env
    python -m embedded.services down --state var/services   # stops both process groups

Stdlib only but for boto3 (both venvs have it) to save and load the objects; the executables are
looked up next to the running interpreter first (``.venv-steps/bin``), then on PATH. ``up`` polls
each service until it answers and gives up after a bounded time with the tail of the service's log
in the error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlplatform_contract.files import write_private_json

STATE_FILE = "services.json"
ENV_FILE = "services.env"
ARTIFACT_BUCKET = "mlflow-artifacts"
S3_DIR = "s3"  # <state>/s3/<bucket>/<key>: the endpoint's objects, kept between runs
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


AUTH_DIR = "auth"
IDENTITIES_FILE = "identities.json"  # the step identities' passwords (model_steps.registry_admin)
ADMIN_USER = "admin"


class ServiceError(RuntimeError):
    pass


def auth_config(state: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The basic-auth app's config for this state dir: (server env, admin credentials env).

    The admin password and the users database live and die together: a state dir with one but not
    the other starts both afresh (the old users could not be logged in as any more)."""
    folder = state / AUTH_DIR
    admin_file, users_db = folder / "admin.json", folder / "users.db"
    if not (admin_file.exists() and users_db.exists()):
        users_db.unlink(missing_ok=True)
        (folder / IDENTITIES_FILE).unlink(missing_ok=True)  # granted in the old database
        write_private_json(
            admin_file, {"username": ADMIN_USER, "password": secrets.token_urlsafe(24)}
        )
    password = json.loads(admin_file.read_text())["password"]
    ini = folder / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = NO_PERMISSIONS\nauth_cache_ttl_seconds = 300\n"
        f"database_uri = sqlite:///{users_db}\nadmin_username = {ADMIN_USER}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    server_env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,  # read once, when the users database is created
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
    }
    return server_env, {
        "MLFLOW_TRACKING_USERNAME": ADMIN_USER,
        "MLFLOW_TRACKING_PASSWORD": password,
    }


def admin_env(state: Path) -> dict[str, str]:
    """The admin's client credentials (provisioning, tests); never part of a step's environment."""
    admin = json.loads((state.resolve() / AUTH_DIR / "admin.json").read_text())
    return {"MLFLOW_TRACKING_USERNAME": admin["username"],
            "MLFLOW_TRACKING_PASSWORD": admin["password"]}  # fmt: skip


# How each server reports the port it bound when asked for port 0 (werkzeug: moto_server;
# uvicorn: mlflow server). Asking for 0 and reading the answer leaves no window in which another
# process could take a port picked in advance.
BOUND_PORT = {
    "moto_server": re.compile(r"Running on http://127\.0\.0\.1:(\d+)"),
    "mlflow server": re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)"),
}


def bound_port(name: str, proc: subprocess.Popen, log: Path, timeout: float) -> int:
    """The port a service started with port 0 reports in its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise ServiceError(
                f"{name} exited with code {proc.returncode} before it bound a port; "
                f"log {log}:\n{_tail(log)}"
            )
        with contextlib.suppress(OSError):
            found = BOUND_PORT[name].search(log.read_text(errors="replace"))
            if found:
                return int(found.group(1))
        time.sleep(0.1)
    raise ServiceError(f"{name} reported no port within {timeout:.0f}s; log {log}:\n{_tail(log)}")


def executable(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise ServiceError(
            f"{name} not found next to {sys.executable} nor on PATH "
            "(run `make setup`: it lives in .venv-steps)"
        )
    return found


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, urllib.error.URLError):
        return False


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _wait_ready(name: str, url: str, proc: subprocess.Popen, log: Path, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise ServiceError(
                f"{name} exited with code {proc.returncode} before it was ready; "
                f"log {log}:\n{_tail(log)}"
            )
        if _http_ok(url):
            return time.monotonic() - started
        time.sleep(0.25)
    raise ServiceError(
        f"{name} did not answer {url} within {timeout:.0f}s; log {log}:\n{_tail(log)}"
    )


def _spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        # own session = own process group: `down` stops the service and every worker it forked
        return subprocess.Popen(
            cmd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def create_bucket(endpoint: str, bucket: str) -> None:
    """moto accepts an unsigned PUT Bucket; 409 (already owned) is fine."""
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", data=b"")
    try:
        with urllib.request.urlopen(req, timeout=10):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise ServiceError(f"could not create bucket {bucket} on {endpoint}: {exc}") from exc


def _client(endpoint: str) -> Any:
    """A boto3 S3 client of the local endpoint (both venvs have boto3; moto refuses unsigned
    object reads)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=DUMMY_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=DUMMY_AWS["AWS_DEFAULT_REGION"],
    )


def save_objects(endpoint: str, state: Path) -> int:
    """Write every object of the endpoint to ``<state>/s3/<bucket>/<key>`` (replacing the last
    copy whole); returns how many."""
    s3 = _client(endpoint)
    target, tmp = state / S3_DIR, state / (S3_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    for bucket in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        (tmp / bucket).mkdir(parents=True, exist_ok=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for key in [o["Key"] for o in page.get("Contents", [])]:
                if key.endswith("/") or ".." in key.split("/"):
                    continue
                path = tmp / bucket / key
                path.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(path))
                count += 1
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return count


def load_objects(endpoint: str, state: Path) -> int:
    """Put back what :func:`save_objects` kept in ``<state>/s3``; returns how many objects."""
    s3 = _client(endpoint)
    count = 0
    for bucket_dir in sorted(p for p in (state / S3_DIR).glob("*") if p.is_dir()):
        create_bucket(endpoint, bucket_dir.name)
        for path in sorted(p for p in bucket_dir.rglob("*") if p.is_file()):
            s3.upload_file(str(path), bucket_dir.name, path.relative_to(bucket_dir).as_posix())
            count += 1
    return count


def _start_s3(
    state: Path, info: dict[str, Any], procs: dict[str, subprocess.Popen], base_env: dict[str, str],
    buckets: tuple[str, ...], timeout: float,
) -> str:  # fmt: skip
    """moto_server on a port it picks; the buckets, and the objects a previous stop saved."""
    log = state / "logs" / "moto.log"
    procs["s3"] = _spawn([executable("moto_server"), "-H", "127.0.0.1", "-p", "0"], base_env, log)
    info["pids"]["s3"] = procs["s3"].pid
    _write_state(state, info)  # so `down` can clean up even if the next start fails
    endpoint = f"http://127.0.0.1:{bound_port('moto_server', procs['s3'], log, timeout)}"
    info["s3_ready_s"] = round(_wait_ready("moto_server", f"{endpoint}/", procs["s3"], log,
                                           timeout), 2)  # fmt: skip
    for bucket in (ARTIFACT_BUCKET, *buckets):
        create_bucket(endpoint, bucket)
    info["s3_objects_loaded"] = load_objects(endpoint, state)
    return endpoint


def _start_mlflow(
    state: Path, info: dict[str, Any], procs: dict[str, subprocess.Popen], base_env: dict[str, str],
    s3_endpoint: str, workers: int, timeout: float,
) -> str:  # fmt: skip
    """The MLflow server with the basic-auth app, artifacts proxied to the S3 endpoint."""
    auth_env, _ = auth_config(state)
    server_env = {
        **base_env, **auth_env, **DUMMY_AWS,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "AWS_ENDPOINT_URL": s3_endpoint,
        # MLflow 3's server otherwise forks ~14 huey job consumers (GenAI jobs this platform
        # does not use): seconds of start-up and about 1 GB of memory on a 2-core machine
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }  # fmt: skip
    log = state / "logs" / "mlflow.log"
    command = [executable("mlflow"), "server", "--app-name", "basic-auth",
               "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
               "--artifacts-destination", f"s3://{ARTIFACT_BUCKET}/",
               "--host", "127.0.0.1", "--port", "0", "--workers", str(workers)]  # fmt: skip
    procs["mlflow"] = _spawn(command, server_env, log)
    info["pids"]["mlflow"] = procs["mlflow"].pid
    _write_state(state, info)
    uri = f"http://127.0.0.1:{bound_port('mlflow server', procs['mlflow'], log, timeout)}"
    info["mlflow_ready_s"] = round(_wait_ready("mlflow server", f"{uri}/health", procs["mlflow"],
                                               log, timeout), 2)  # fmt: skip
    return uri


def up(
    state: Path, *, timeout: float = 90.0, buckets: tuple[str, ...] = (), mlflow_workers: int = 1
) -> dict[str, Any]:
    """Start both services (stopping any left from an earlier ``up`` of this state dir first)."""
    state = state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    if (state / STATE_FILE).exists():
        down(state)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    info: dict[str, Any] = {"state": str(state), "pids": {}}
    procs: dict[str, subprocess.Popen] = {}
    for log in ("moto.log", "mlflow.log"):  # the bound port is read from a fresh log
        (state / "logs" / log).unlink(missing_ok=True)
    try:
        s3_endpoint = _start_s3(state, info, procs, base_env, buckets, timeout)
        tracking_uri = _start_mlflow(
            state, info, procs, base_env, s3_endpoint, mlflow_workers, timeout
        )
    except BaseException:
        down(state)
        raise
    info["env"] = {
        "MLFLOW_TRACKING_URI": tracking_uri,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint,
        **DUMMY_AWS,
    }
    info["tracking_uri"], info["s3_endpoint"] = tracking_uri, s3_endpoint
    _write_state(state, info)
    (state / ENV_FILE).write_text("".join(f"export {k}={v}\n" for k, v in info["env"].items()))
    return info


def _write_state(state: Path, info: dict[str, Any]) -> None:
    tmp = state / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    os.replace(tmp, state / STATE_FILE)


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down(state: Path, *, grace: float = 10.0) -> list[str]:
    """Stop every process group recorded in the state dir: SIGTERM, then SIGKILL after ``grace``."""
    state = state.resolve()
    path = state / STATE_FILE
    if not path.exists():
        return []
    info = json.loads(path.read_text())
    stopped = []
    # the server first (it holds the sqlite db and talks to S3), then the endpoint, whose objects
    # are saved to disk before it stops (its memory is all it has)
    for name in ("mlflow", "s3"):
        pid = info.get("pids", {}).get(name)
        if not pid:
            continue
        if name == "s3" and info.get("s3_endpoint") and _alive(pid):
            _save_quietly(info["s3_endpoint"], state)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        stopped.append(name)
    path.unlink()
    (state / ENV_FILE).unlink(missing_ok=True)
    return stopped


def _save_quietly(endpoint: str, state: Path) -> None:
    """Save the endpoint's objects; a failure is reported, never a reason not to stop."""
    try:
        save_objects(endpoint, state)
    except Exception as exc:  # botocore's errors too: report, then stop the endpoint anyway
        print(f"embedded services: could not save the S3 objects to {state / S3_DIR}: {exc}",
              file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m embedded.services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--state",
        default="var/services",
        type=Path,
        help="folder for the sqlite db, logs, services.json and services.env",
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="readiness limit per service")
    parser.add_argument(
        "--bucket",
        action="append",
        default=[],
        help="extra bucket to create on the S3 endpoint (repeatable)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            info = up(args.state, timeout=args.timeout, buckets=tuple(args.bucket))
            print(json.dumps(info, indent=2, sort_keys=True))
        elif args.action == "down":
            print(json.dumps({"stopped": down(args.state)}))
        else:
            path = args.state.resolve() / STATE_FILE
            if not path.exists():
                print(json.dumps({"running": False}))
                return 1
            info = json.loads(path.read_text())
            ok = bool(info.get("tracking_uri")) and _http_ok(f"{info['tracking_uri']}/health")
            print(json.dumps({"running": ok, **info}, indent=2, sort_keys=True))
            return 0 if ok else 1
    except ServiceError as exc:
        print(f"embedded services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
