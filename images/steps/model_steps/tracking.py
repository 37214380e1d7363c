"""MLflow conventions of the platform and a bounded check that the tracking server is there.

Layout (see docs/training.md):

* one **experiment per model and customer**: ``<pipeline>/<customer>``, the unit a customer's
  registry identities are granted on (mlplatform_contract.registry_access), so no customer's step
  reads another's runs; a model is compared across customers with a search over its experiments;
* one **registered model per model and customer**: ``<pipeline>-<customer>``; each training run adds
  a version; the evaluate gate moves the ``champion`` alias (MLflow 3: aliases, not stages).

Credentials: the MLflow client reads ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` itself; each runtime
hands a step only its own role's (docs/registry-access.md).

Dead server: a step checks ``<tracking uri>/health`` before any work, retrying (tenacity) with
exponential backoff for at most ``MLOPS_MLFLOW_WAIT_S`` seconds (default 60), then fails with a message naming
the URI. MLflow's own HTTP client is bounded too (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``/``_TIMEOUT``
defaults are set when unset), so a server that dies mid-run fails the step instead of hanging it.
"""

from __future__ import annotations

import os
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

import tenacity

from mlplatform_contract.environment import StepEnvironment
from mlplatform_contract.registry_access import (  # re-exported: one definition for both sides
    experiment_name as experiment_name,
)
from mlplatform_contract.registry_access import (
    registered_model_name as registered_model_name,
)
from model_steps.contract import (
    ENV_MLFLOW_URI,
    StepContext,
    StepError,
    missing_setting,
)

DEFAULT_WAIT_S = 60.0
ENV_SERVER_CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # read by MLflow's client itself
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


# The registry alias of the model that scores a customer: evaluate moves it, score and the monitor
# read it (champion_version, the one lookup).
CHAMPION_ALIAS = "champion"


def champion_version(name: str) -> Any | None:
    """The MLflow ModelVersion of ``name`` behind @champion, or None without one (the tracking
    server is already connected)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException as exc:
        if exc.error_code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise  # no access is not "no champion": the step must fail, not train a first one
        return None


def tracking_uri(ctx: StepContext) -> str:
    uri = ctx.settings.mlflow_tracking_uri
    if not uri:
        raise missing_setting(ENV_MLFLOW_URI)
    return uri


class _NotReady(Exception):
    """One /health probe that did not answer 200 (the reason is the message)."""


def _tls_context() -> ssl.SSLContext | None:
    """The CA bundle MLflow's own client trusts (``MLFLOW_TRACKING_SERVER_CERT_PATH``: in the
    cluster, the CA of the server's cert-manager certificate), so the probe verifies the same."""
    ca = os.environ.get(ENV_SERVER_CERT_PATH)
    return ssl.create_default_context(cafile=ca) if ca else None


def _probe(uri: str, timeout: float) -> None:
    url = f"{uri.rstrip('/')}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=_tls_context()) as resp:
            if resp.status != 200:
                raise _NotReady(f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise _NotReady(f"HTTP {exc.code}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise _NotReady(str(getattr(exc, "reason", exc))) from None


def wait_for_server(uri: str, *, budget_s: float | None = None, sleep=time.sleep) -> float:
    """Return the seconds it took ``uri`` to answer /health; raise StepError after the budget.

    tenacity retries the probe with exponential backoff (1 s doubling to 15 s) and stops before a
    wait would overrun the budget (counting the waits themselves, so an injected ``sleep`` works).
    """
    if not uri.startswith(("http://", "https://")):
        return 0.0  # file:, sqlite: stores need no server
    budget = StepEnvironment.of().mlflow_wait_s if budget_s is None else float(budget_s)
    started, slept = time.monotonic(), [0.0]

    def pause(seconds: float) -> None:
        sleep(seconds)
        slept[0] += seconds

    def elapsed() -> float:
        return max(time.monotonic() - started, slept[0])

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_NotReady),
        wait=tenacity.wait_exponential(multiplier=1, min=1, max=15),
        stop=lambda state: elapsed() + (state.upcoming_sleep or 0) > budget,
        sleep=pause,
    )
    try:
        retrying(lambda: _probe(uri, max(1.0, min(10.0, budget - elapsed()))))
    except tenacity.RetryError as exc:
        raise StepError(
            f"MLflow tracking server {uri} is not reachable: {exc.last_attempt.attempt_number} "
            f"attempt(s) over {elapsed():.0f}s, last error: {exc.last_attempt.exception()}. Check "
            f"{ENV_MLFLOW_URI} and that the server is up (locally: python -m embedded.services "
            "status --state var/services)"
        ) from None
    return time.monotonic() - started


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
    env = ctx.settings
    tags = {
        "pipeline": ctx.pipeline,
        "customer": ctx.customer,
        "data_date": ctx.data_date.isoformat(),
        "airflow.dag_id": env.dag_id or f"{ctx.pipeline}__{ctx.customer}",
        "airflow.run_id": env.dag_run_id or ctx.run_id,
        "airflow.task_id": env.task_id or ctx.step,
        "airflow.try_number": env.try_number,
        "run_key": ctx.run_key,
        "git_sha": env.git_sha or "unknown",
        "image_digest": env.image_digest,
        "runtime": env.runtime,
    }
    if env.git_sha:
        tags["mlflow.source.git.commit"] = env.git_sha
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return {k: v for k, v in tags.items() if v != ""}
