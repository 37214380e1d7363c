"""The step contract shared by every step image and both runtimes.

A step is ``python -m model_steps <step> --pipeline P --customer C --run-id R --data-date D`` plus
environment. It writes its small result as JSON to the XCom file that KubernetesPodOperator reads
(``/airflow/xcom/return.json``; the local runtime passes another path in ``STEP_XCOM_PATH``) and
reports through its exit code. Large data goes to the lake, never through XCom.

The contract's names, exit codes and id patterns come from ``mlplatform_contract.steps`` (one
definition, shared with the control plane); this module adds what only the workload needs: the
step's context, its errors and the result file. Standard library (and the shared package) only: no
image needs an extra just to speak the contract.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The contract's names, exit codes and id patterns are defined once, in the shared package both
# sides install (plugins/mlplatform_contract/steps.py); the workload imports them from here.
from mlplatform_contract.environment import EnvironmentError_, StepEnvironment
from mlplatform_contract.layout import CustomerLayout, RunLayout
from mlplatform_contract.steps import (
    CUSTOMER_ID_PATTERN,
    ENV_CONFIG,
    ENV_CRM_API_TOKEN,
    ENV_CRM_BASE_URL,
    ENV_GIT_SHA,
    ENV_IMAGE_DIGEST,
    ENV_LAKE_URI,
    ENV_MLFLOW_URI,
    ENV_MODEL,
    ENV_PARAMS,
    ENV_SCORES_URI,
    ENV_TRIAL,
    ENV_TRY_NUMBER,
    ENV_XCOM_PATH,
    EXIT_CHECK_FAILED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIP_DOWNSTREAM,
    EXIT_USAGE,
    MONITOR_STEP,
    NON_RETRYABLE_EXIT_CODES,
    PIPELINE_NAME_PATTERN,
    PLATFORM_STEPS,
    POD_XCOM_PATH,
    RESULT_LOG_PREFIX,
    STEP_KINDS,
    STEP_NAME_PATTERN,
    TUNING_STEPS,
)

__all__ = [
    "CUSTOMER_ID_PATTERN",
    "ENV_CONFIG",
    "ENV_CRM_API_TOKEN",
    "ENV_CRM_BASE_URL",
    "ENV_GIT_SHA",
    "ENV_IMAGE_DIGEST",
    "ENV_LAKE_URI",
    "ENV_MLFLOW_URI",
    "ENV_MODEL",
    "ENV_PARAMS",
    "ENV_SCORES_URI",
    "ENV_TRIAL",
    "ENV_TRY_NUMBER",
    "ENV_XCOM_PATH",
    "EXIT_CHECK_FAILED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_SKIP_DOWNSTREAM",
    "EXIT_USAGE",
    "MONITOR_STEP",
    "NON_RETRYABLE_EXIT_CODES",
    "PIPELINE_NAME_PATTERN",
    "PLATFORM_STEPS",
    "POD_XCOM_PATH",
    "RESULT_LOG_PREFIX",
    "STEP_KINDS",
    "STEP_NAME_PATTERN",
    "TUNING_STEPS",
    "CheckFailed",
    "SkipDownstream",
    "StepContext",
    "StepError",
    "UsageError",
    "load_json_env",
    "missing_setting",
    "run_key",
    "write_result",
]  # fmt: skip

# Platform settings a step may need: what it is for, and its value on the embedded platform (which
# `make airflow` and `make run` start: embedded/platform.py). The cluster sets them in the ConfigMap
# step-env (helm/platform values `stepEnv`).
PLATFORM_SETTINGS: dict[str, tuple[str, str]] = {
    ENV_LAKE_URI: (
        "where the lake is (a file:// path locally, s3://bucket/prefix in the cluster)",
        "file://<repo>/var/platform/lake (make airflow), file://<repo>/var/run/lake (make run)",
    ),
    ENV_MLFLOW_URI: (
        "the MLflow tracking server that logs and registers the models",
        "http://127.0.0.1:<port> of the embedded MLflow server (embedded/services.py)",
    ),
}


def missing_setting(name: str) -> UsageError:
    """The error for an unset platform setting: the variable, what it is for, its local default
    and what sets it. A usage error (exit 2): a retry with the same environment cannot fix it."""
    purpose, local = PLATFORM_SETTINGS[name]
    return UsageError(
        f"{name} is not set: it is {purpose}. Locally `make airflow` and `make run` set it for every "
        f"step (embedded platform: {local}); in the cluster it comes from the ConfigMap step-env "
        "(helm/platform values stepEnv). Run the DAG through one of those, or export it."
    )


_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class StepError(Exception):
    """A failure the step explains to its user; the CLI prints it without a traceback. ``result``:
    what the step did before it failed (a step result model), pushed as metrics, never as XCom."""

    exit_code = EXIT_FAILED

    def __init__(self, *args: object, result: Any = None) -> None:
        super().__init__(*args)
        self.result = result


class UsageError(StepError):
    exit_code = EXIT_USAGE


class CheckFailed(StepError):
    """A deterministic failure: the model's output broke its declared contract, or the data failed
    validation. Not retried; the message says what to fix, and the task re-runs once cleared."""

    exit_code = EXIT_CHECK_FAILED

    def __init__(self, what: str, fix: str) -> None:
        super().__init__(
            f"{what}\nTo fix: {fix} A retry gives the same answer, so the task fails now; after "
            "the fix, clear the task (Airflow UI or `airflow tasks clear`) to run it again."
        )


class SkipDownstream(Exception):
    """Raised by a step (a gate) whose policy says: stop here, skip what follows, fail nothing."""

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        if result is None or isinstance(result, dict):  # a model's own step: a plain dict
            self.result = {"skipped": True, "reason": reason, **(result or {})}
        else:  # a step result model with skipped/reason fields (EvaluateResult)
            self.result = result.model_copy(update={"skipped": True, "reason": reason})


def run_key(run_id: str) -> str:
    """A path- and key-safe, deterministic form of an Airflow run id.

    Airflow run ids contain ':' and '+' (``manual__2026-01-01T00:00:00+00:00``), which are awkward in
    S3 keys and MLflow names. Retries of the same run must land on the same key, so the mapping is a
    pure function: readable prefix plus a short hash that keeps distinct ids distinct.
    """
    readable = _UNSAFE_KEY_CHARS.sub("_", run_id).strip("_")[:60] or "run"
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class StepContext:
    """Everything a step body needs to know about its invocation."""

    step: str
    pipeline: str
    customer: str
    run_id: str
    data_date: dt.date
    config: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        return run_key(self.run_id)

    @functools.cached_property
    def settings(self) -> StepEnvironment:
        """The step's environment (``env``), typed and validated once (a bad value: exit 2)."""
        try:
            return StepEnvironment.of(self.env)
        except EnvironmentError_ as exc:
            raise UsageError(str(exc)) from None

    @property
    def layout(self) -> RunLayout:
        """Every zone and path of this run (mlplatform_contract.layout)."""
        scores = self.settings.scores_uri or None
        customer = CustomerLayout(self.lake_uri, self.pipeline, self.customer, scores)
        return customer.run(self.run_key)

    @property
    def lake_uri(self) -> str:
        if not self.settings.lake_uri:
            raise missing_setting(ENV_LAKE_URI)
        return self.settings.lake_uri

    def lake_path(self, zone: str, *parts: str) -> str:
        """Where this run's output for ``zone`` lives: zone/pipeline/customer=C/run=R/…"""
        return self.layout.path(zone, *parts)

    def run_path(self, zone: str, key: str, *parts: str) -> str:
        """Where the output of the run with run key ``key`` lives (the monitor reads past runs)."""
        return self.layout.customer.run(key).path(zone, *parts)

    def customer_path(self, zone: str) -> str:
        """The folder of every run of this pipeline and customer in ``zone``."""
        return self.layout.customer.zone(zone)


def load_json_env(env: dict[str, str], name: str) -> dict[str, Any]:
    """A JSON-object environment variable of the contract ({} when unset)."""
    raw = env.get(name) or "{}"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def write_result(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the step's XCom result atomically, so a reader never sees half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(result, default=str, sort_keys=True)
    with tempfile.NamedTemporaryFile("w", dir=target.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(payload)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, target)
    return target
