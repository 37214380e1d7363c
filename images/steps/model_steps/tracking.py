"""MLflow conventions of the platform and a bounded check that the tracking server is there.

Layout (see docs/training.md):

* one **experiment per model** (pipeline): ``<pipeline>``; the customer is a run tag (``customer``),
  so one experiment compares a model across customers and the experiment count stays bounded;
* one **registered model per model and customer**: ``<pipeline>-<customer>``; each training run adds
  a version; the evaluate gate moves the ``champion`` alias (MLflow 3: aliases, not stages).

Dead server: a step checks ``<tracking uri>/health`` before any work, retrying with exponential
backoff for at most ``MLOPS_MLFLOW_WAIT_S`` seconds (default 60), then fails with a message naming
the URI. MLflow's own HTTP client is bounded too (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``_TIMEOUT``
defaults are set when unset), so a server that dies mid-run fails the step instead of hanging it.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Any

from model_steps.contract import (
    ENV_GIT_SHA,
    ENV_IMAGE_DIGEST,
    ENV_MLFLOW_URI,
    ENV_TRY_NUMBER,
    StepContext,
    StepError,
    missing_setting,
)

DEFAULT_WAIT_S = 60.0
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def experiment_name(pipeline: str) -> str:
    return pipeline


def registered_model_name(pipeline: str, customer: str) -> str:
    return f"{pipeline}-{customer}"


def tracking_uri(ctx: StepContext) -> str:
    uri = ctx.env.get(ENV_MLFLOW_URI, "").strip()
    if not uri:
        raise missing_setting(ENV_MLFLOW_URI)
    return uri


def wait_for_server(uri: str, *, budget_s: float | None = None, sleep=time.sleep) -> float:
    """Return the seconds it took ``uri`` to answer /health; raise StepError after the budget."""
    if not uri.startswith(("http://", "https://")):
        return 0.0  # file:, sqlite: stores need no server
    budget = float(
        os.environ.get("MLOPS_MLFLOW_WAIT_S", DEFAULT_WAIT_S) if budget_s is None else budget_s
    )
    started = time.monotonic()
    delay, attempts, last, slept = 1.0, 0, "no attempt", 0.0
    while True:
        attempts += 1
        remaining = budget - (time.monotonic() - started)
        try:
            timeout = max(1.0, min(10.0, remaining))
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(getattr(exc, "reason", exc))
        elapsed = max(time.monotonic() - started, slept)
        if elapsed + delay > budget:
            raise StepError(
                f"MLflow tracking server {uri} is not reachable: {attempts} attempt(s) over "
                f"{elapsed:.0f}s, last error: {last}. Check {ENV_MLFLOW_URI} and that the server is "
                "up (locally: python -m embedded.services status --state var/services)"
            )
        sleep(delay)
        slept += delay
        delay = min(delay * 2, 15.0)


def bound_mlflow_client() -> None:
    for k, v in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(k, v)


def connect(uri: str) -> None:
    """Point this process's MLflow client at ``uri`` with bounded retries, once it answers."""
    import mlflow

    bound_mlflow_client()
    wait_for_server(uri)
    mlflow.set_tracking_uri(uri)


def run_tags(ctx: StepContext, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Tags every training run carries: who (customer, pipeline), which Airflow run, which code."""
    env = ctx.env
    tags = {
        "pipeline": ctx.pipeline,
        "customer": ctx.customer,
        "data_date": ctx.data_date.isoformat(),
        "airflow.dag_id": env.get("AIRFLOW_CTX_DAG_ID") or f"{ctx.pipeline}__{ctx.customer}",
        "airflow.run_id": env.get("AIRFLOW_CTX_DAG_RUN_ID") or ctx.run_id,
        "airflow.task_id": env.get("AIRFLOW_CTX_TASK_ID") or ctx.step,
        "airflow.try_number": env.get(ENV_TRY_NUMBER, ""),
        "run_key": ctx.run_key,
        "git_sha": env.get(ENV_GIT_SHA, "unknown"),
        "image_digest": env.get(ENV_IMAGE_DIGEST, "unknown"),
        "runtime": env.get("MLOPS_RUNTIME", "local"),
    }
    if env.get(ENV_GIT_SHA):
        tags["mlflow.source.git.commit"] = env[ENV_GIT_SHA]
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return {k: v for k, v in tags.items() if v != ""}
