"""The step contract, defined once: what the control plane runs and what the workload answers.

A step is ``python -m model_steps <step> --pipeline P --customer C --run-id R --data-date D`` plus
the environment named here. It writes its result (mlplatform_contract.results) as JSON to the XCom
file KubernetesPodOperator reads (:data:`POD_XCOM_PATH`; the local runtime passes another path in
:data:`ENV_XCOM_PATH`) and reports through its exit code. The control plane
(``plugins/mlplatform``) builds the command, the environment and the retry policy from these names;
the workload (``model_steps.contract``, ``model_steps.cli``) parses and answers with the same ones.

Standard library only: the scheduler imports it at DAG parse time and every step image at start.
"""

from __future__ import annotations

import json
import re
from typing import Literal

StepKind = Literal["ingest", "validate", "train", "evaluate", "score", "publish"]
# The training chain's steps, in order; each is also the image (and account) a step runs in.
STEP_KINDS: tuple[StepKind, ...] = ("ingest", "validate", "train", "evaluate", "score", "publish")
# The monitoring DAG's step, outside the training chain: it runs in the ingest image and account
# (Spark applies the model's label hook to the outcome window; the lake and scores are read).
MONITOR_STEP = "monitor"
MONITOR_RUNS_IN: StepKind = "ingest"
# The tuning stage's steps (settings tuning.enabled; model_steps/steps/tuning.py): plan the trials,
# train one trial, keep the better half (successive halving), pick the best. They run in the train
# image as the train kind; no DAG has them unless tuning is on.
TUNING_STEPS: tuple[str, ...] = ("tune", "trial", "halve", "select")
PLATFORM_STEPS: tuple[str, ...] = (*STEP_KINDS, MONITOR_STEP)

WORKLOAD_MODULE = "model_steps"  # python -m <this> <step> ...
# the local runtime's horovodrun (model_steps/horovod_launch.py: no TensorFlow-importing probe)
HOROVOD_LAUNCHER = f"{WORKLOAD_MODULE}.horovod_launch"

EXIT_OK = 0
EXIT_FAILED = 1  # a failure a retry may fix: a dead service, a drop not landed yet, a killed node
EXIT_USAGE = 2  # bad invocation or missing configuration (UsageError)
# A model broke its own contract (a declared column missing, a value that does not fit its declared
# type) or the data failed validation (CheckFailed): the same code and data give the same answer.
EXIT_CHECK_FAILED = 3
# KubernetesPodOperator(skip_on_exit_code=EXIT_SKIP_DOWNSTREAM) and the local runtime both turn
# this code into a skipped task, so a gate can stop downstream steps without failing the run.
EXIT_SKIP_DOWNSTREAM = 99
# Exit codes a retry cannot fix (the same command, environment and data give the same answer): both
# runtimes fail the task at once, without its retries (AirflowFailException). Every other non-zero
# code keeps the step's retries.
NON_RETRYABLE_EXIT_CODES: dict[int, str] = {
    EXIT_USAGE: "bad invocation or missing configuration",
    EXIT_CHECK_FAILED: (
        "the model broke its declared contract or the data failed validation; fix the model or "
        "the data, then clear the task to re-run it"
    ),
}

POD_XCOM_PATH = "/airflow/xcom/return.json"  # where KubernetesPodOperator's sidecar reads it
# The CLI also logs its result on one line with this prefix, so runtimes without an XCom sidecar
# (the MPIJob launcher) can recover it from the logs.
RESULT_LOG_PREFIX = "STEP_RESULT_JSON="

# Environment variables of the contract (names only; values come from the runtime).
ENV_XCOM_PATH = "STEP_XCOM_PATH"
ENV_CONFIG = "STEP_CONFIG"  # the customer's settings (mlplatform_contract.settings), JSON
ENV_PARAMS = "STEP_PARAMS"  # the Airflow run's params (the trigger form's overrides), JSON
# Trigger-form params of a run pinned to a registered version (re-score, backfill, rollback): the
# control plane skips training (mlplatform.pinning), the gate and score act on the version
# (model_steps.pinned).
PARAM_MODEL_VERSION = "model_version"
PARAM_MAKE_CHAMPION = "make_champion"
PARAM_REASON = "reason"
# Who asks for the pinned run (recorded as the champion move's actor): "operator" by default; the
# monitoring DAG's automatic rollback sets "automatic" and the champion it replaces, so a champion
# promoted since the request is not undone (model_steps.pinned).
PARAM_ACTOR = "actor"
PARAM_REPLACES = "replaces_version"
# Which model the step runs: JSON {"ref": import path, "task": declared task type, "source": the DAG
# file}; the step imports the model package named by ref (model_steps.model_loader).
ENV_MODEL = "STEP_MODEL"
ENV_TRIAL = "STEP_TRIAL"  # the trial a mapped trial task trains: JSON {"name", "index", "params"…}
ENV_LAKE_URI = "LAKE_URI"
ENV_SCORES_URI = "SCORES_URI"  # the scores tables' root (the scores bucket); unset: <lake>/scores
ENV_MLFLOW_URI = "MLFLOW_TRACKING_URI"
# The publish step's CRM endpoint and token: the customer's crm.connection_id names both the Airflow
# connection (local runtime) and the Secret of that name with _ as - (cluster; runtime/pods.py).
ENV_CRM_BASE_URL = "CRM_BASE_URL"
ENV_CRM_API_TOKEN = "CRM_API_TOKEN"
# Lineage the training run records in MLflow: the image the step runs (pinned by digest), the commit
# it was built from, and the Airflow try (the task runner sets the other AIRFLOW_CTX_* locally).
ENV_IMAGE_DIGEST = "MLOPS_IMAGE_DIGEST"
ENV_GIT_SHA = "MLOPS_GIT_SHA"
ENV_TRY_NUMBER = "AIRFLOW_CTX_TRY_NUMBER"

CUSTOMER_ID_REGEX = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
# a pipeline's name, and a model's own step (extra_steps): 3-40 of a-z, 0-9 and _
PIPELINE_NAME_REGEX = r"^[a-z][a-z0-9_]{1,38}[a-z0-9]$"
STEP_NAME_REGEX = PIPELINE_NAME_REGEX
CUSTOMER_ID_PATTERN = re.compile(CUSTOMER_ID_REGEX)
PIPELINE_NAME_PATTERN = re.compile(PIPELINE_NAME_REGEX)
STEP_NAME_PATTERN = re.compile(STEP_NAME_REGEX)


def trial_value(trial: object) -> str:
    """``STEP_TRIAL`` of a mapped trial task: the task maps over the tune (or halve) step's result,
    a dict, so Airflow hands each task a (name, trial) pair; the step gets the trial as JSON."""
    if isinstance(trial, list | tuple) and len(trial) == 2 and isinstance(trial[0], str):
        trial = trial[1]
    return json.dumps(trial, sort_keys=True)
