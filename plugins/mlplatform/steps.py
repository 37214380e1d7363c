"""What the control plane knows about the workload contract (images/steps/model_steps/contract.py).

The two sides live in different environments and never import each other; a test checks that these
constants match the workload's.
"""

from typing import Literal

StepKind = Literal["ingest", "validate", "train", "evaluate", "score", "publish"]
STEP_KINDS: tuple[StepKind, ...] = ("ingest", "validate", "train", "evaluate", "score", "publish")
# The monitoring DAG's step, outside the training chain: it runs in the ingest image and account
# (Spark applies the model's label hook to the outcome window; the lake and scores are read).
MONITOR_STEP = "monitor"
MONITOR_RUNS_IN: StepKind = "ingest"
# The tuning stage's steps (settings tuning.enabled): plan, one trial, keep the better half, pick
# the best. They run in the train image as the train kind; no DAG has them unless tuning is on.
TUNING_STEPS: tuple[str, ...] = ("tune", "trial", "halve", "select")
ENV_TRIAL = "STEP_TRIAL"  # the trial a mapped trial task trains: JSON {"name", "index", "params"…}

WORKLOAD_MODULE = "model_steps"
EXIT_SKIP_DOWNSTREAM = 99
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
# Exit codes a retry cannot fix (the same command, environment and data give the same answer): both
# runtimes fail the task at once, without its retries (AirflowFailException). Every other non-zero
# code (a dead service, a missing drop, a killed spot node) keeps the step's retries.
NON_RETRYABLE_EXIT_CODES: dict[int, str] = {
    EXIT_USAGE: "bad invocation or missing configuration",
    EXIT_CHECK_FAILED: (
        "the model broke its declared contract or the data failed validation; fix the model or "
        "the data, then clear the task to re-run it"
    ),
}
POD_XCOM_PATH = "/airflow/xcom/return.json"
ENV_XCOM_PATH = "STEP_XCOM_PATH"
ENV_CONFIG = "STEP_CONFIG"
ENV_PARAMS = "STEP_PARAMS"
ENV_MODEL = "STEP_MODEL"  # {"ref", "task", "source"} of the model the step runs
# The publish step's CRM endpoint and token: the customer's crm.connection_id names both the Airflow
# connection (local runtime) and the Secret of that name with _ as - (cluster; runtime/pods.py).
ENV_CRM_BASE_URL = "CRM_BASE_URL"
ENV_CRM_API_TOKEN = "CRM_API_TOKEN"
# Lineage the training run records in MLflow: the image the step runs (pinned by digest), the commit
# it was built from, and the Airflow try (the task runner sets the other AIRFLOW_CTX_* locally).
ENV_IMAGE_DIGEST = "MLOPS_IMAGE_DIGEST"
ENV_GIT_SHA = "MLOPS_GIT_SHA"
ENV_TRY_NUMBER = "AIRFLOW_CTX_TRY_NUMBER"
# The step CLI also logs its result on one line with this prefix, so runtimes without an XCom
# sidecar (the MPIJob launcher) can recover it from the logs.
RESULT_LOG_PREFIX = "STEP_RESULT_JSON="

CUSTOMER_ID_REGEX = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
PIPELINE_NAME_REGEX = r"^[a-z][a-z0-9_]{1,38}[a-z0-9]$"


def trial_value(trial: object) -> str:
    """``STEP_TRIAL`` of a mapped trial task: the task maps over the tune (or halve) step's result,
    a dict, so Airflow hands each task a (name, trial) pair; the step gets the trial as JSON."""
    import json

    if isinstance(trial, list | tuple) and len(trial) == 2 and isinstance(trial[0], str):
        trial = trial[1]
    return json.dumps(trial, sort_keys=True)
