"""The step contract shared by every step image and both runtimes.

A step is ``python -m model_steps <step> --pipeline P --customer C --run-id R --data-date D`` plus
environment. It writes its small result as JSON to the XCom file that KubernetesPodOperator reads
(``/airflow/xcom/return.json``; the local runtime passes another path in ``STEP_XCOM_PATH``) and
reports through its exit code. Large data goes to the lake, never through XCom.

This module is stdlib-only on purpose: the control plane's tests import it to check that both sides
agree on names and exit codes, and no image should need an extra just to speak the contract.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_NAMES: tuple[str, ...] = ("ingest", "validate", "train", "evaluate", "score", "publish")
# Outside the training chain: the monitoring DAG's step (it runs in the ingest image: Spark reads
# the outcomes through the model's own label hook).
MONITOR_STEP = "monitor"
# The tuning stage (settings tuning.enabled; model_steps/steps/tuning.py): plan the trials, train
# one trial (the train step in trial mode), keep the better half (successive halving), pick the best.
TUNING_STEPS: tuple[str, ...] = ("tune", "trial", "halve", "select")
ENV_TRIAL = "STEP_TRIAL"  # which trial a mapped trial task trains (JSON, from the tune step's XCom)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# A model broke its own contract (a declared column missing, a value that does not fit its declared
# type) or the data failed validation: the same code and data give the same answer, so no retry.
EXIT_CHECK_FAILED = 3
# KubernetesPodOperator(skip_on_exit_code=EXIT_SKIP_DOWNSTREAM) and the local runtime both turn
# this code into a skipped task, so a gate can stop downstream steps without failing the run.
EXIT_SKIP_DOWNSTREAM = 99
# Codes a retry cannot fix: both runtimes fail the task without retries (UsageError's and
# CheckFailed's codes). Every other failure (EXIT_FAILED: a dead service, a drop not landed yet, a
# killed node) is retried.
NON_RETRYABLE_EXIT_CODES: tuple[int, ...] = (EXIT_USAGE, EXIT_CHECK_FAILED)

DEFAULT_XCOM_PATH = "/airflow/xcom/return.json"
# The CLI also logs the result on one line with this prefix: the MPIJob launcher has no XCom
# sidecar, so its operator recovers the result from the launcher's log.
RESULT_LOG_PREFIX = "STEP_RESULT_JSON="

# Environment variables of the contract (names only; values come from the runtime).
ENV_XCOM_PATH = "STEP_XCOM_PATH"
ENV_CONFIG = "STEP_CONFIG"
ENV_PARAMS = "STEP_PARAMS"  # the Airflow run's params (the operator's trigger-form overrides)
# Which model the step runs: JSON {"ref": import path, "task": declared task type, "source": the DAG
# file}; the step imports the model package named by ref (model_steps.model_loader).
ENV_MODEL = "STEP_MODEL"
ENV_LAKE_URI = "LAKE_URI"
ENV_MLFLOW_URI = "MLFLOW_TRACKING_URI"
ENV_IMAGE_DIGEST = "MLOPS_IMAGE_DIGEST"  # lineage, recorded as MLflow run tags (tracking.run_tags)
ENV_GIT_SHA = "MLOPS_GIT_SHA"
ENV_TRY_NUMBER = "AIRFLOW_CTX_TRY_NUMBER"
# The publish step's CRM endpoint and credential: in the cluster from the customer's Secret named
# like crm.connection_id with _ as - (the base URL may default from the ConfigMap step-env);
# locally the LocalStepOperator resolves the Airflow connection crm.connection_id into them.
ENV_CRM_BASE_URL = "CRM_BASE_URL"
ENV_CRM_API_TOKEN = "CRM_API_TOKEN"

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


CUSTOMER_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
PIPELINE_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,38}[a-z0-9]$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class StepError(Exception):
    """A failure the step explains to its user; the CLI prints it without a traceback."""

    exit_code = EXIT_FAILED


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

    def __init__(self, reason: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.result = {"skipped": True, "reason": reason, **(result or {})}


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

    @property
    def lake_uri(self) -> str:
        try:
            return self.env[ENV_LAKE_URI]
        except KeyError:
            raise missing_setting(ENV_LAKE_URI) from None

    def lake_path(self, zone: str, *parts: str) -> str:
        """Where this run's output for ``zone`` lives: zone/pipeline/customer=C/run=R/…"""
        return self.run_path(zone, self.run_key, *parts)

    def run_path(self, zone: str, key: str, *parts: str) -> str:
        """Where the output of the run with run key ``key`` lives (the monitor reads past runs)."""
        return "/".join([self.customer_path(zone), f"run={key}", *parts])

    def customer_path(self, zone: str) -> str:
        """The folder of every run of this pipeline and customer in ``zone``."""
        return "/".join(
            [self.lake_uri.rstrip("/"), zone, self.pipeline, f"customer={self.customer}"]
        )


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
