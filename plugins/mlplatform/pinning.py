"""Score with a chosen model version instead of training one: re-score, backfill, roll back.

The training DAG's own trigger form carries it, so an operator needs no second DAG per customer
(hundreds of customers already give hundreds of DAGs): set *model_version* and the run skips the
training stage, the gate checks that the version once passed its gate (and, with *make_champion*,
moves ``champion`` to it and records who and why), then score and publish run as in any run, under
their exactly-once protocol. Leave it empty and the run trains as always.

The steps read the same three params (``STEP_PARAMS``); this module only decides which tasks skip.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param

from mlplatform_contract.steps import (
    PARAM_ACTOR,
    PARAM_MAKE_CHAMPION,
    PARAM_MODEL_VERSION,
    PARAM_REASON,
    PARAM_REPLACES,
    TUNING_STEPS,
)

# a registered model version as the form takes it (MLflow numbers versions from 1)
REGISTRY_VERSION = r"^[1-9][0-9]{0,8}$"

PINNED_PARAMS = {
    PARAM_MODEL_VERSION: Param(
        None,
        type=["null", "string"],
        pattern=REGISTRY_VERSION,
        title="Model version (re-score / roll back)",
        description="Score with this registered version instead of training: a backfill or an "
        "incident re-score. It must have passed its gate once. Empty: train and gate as usual.",
    ),
    PARAM_MAKE_CHAMPION: Param(
        False,
        type="boolean",
        title="Make it the champion (roll back)",
        description="With a model version: move the champion alias to it before scoring (a "
        "rollback), recorded in the champion history with the reason below.",
    ),
    PARAM_REASON: Param(
        None,
        type=["null", "string"],
        maxLength=200,
        title="Reason",
        description="Why this version (recorded with the rollback or re-score).",
    ),
    # set by the monitoring DAG's automatic rollback (mlplatform.rollback); an operator leaves them
    PARAM_ACTOR: Param(
        "operator",
        enum=["operator", "automatic"],
        title="Requested by",
        description="Recorded as the champion move's actor: operator for a run triggered by hand; "
        "the monitoring DAG's automatic rollback sets automatic.",
    ),
    PARAM_REPLACES: Param(
        None,
        type=["null", "string"],
        pattern=REGISTRY_VERSION,
        title="Only if the champion is still",
        description="With make_champion: move the alias only while the champion is this version "
        "(the automatic rollback sets it, so a champion promoted since is not undone). Empty: "
        "always.",
    ),
}

# the steps a pinned run skips: it scores a version that exists, so nothing is trained
SKIPPED_WHEN_PINNED = frozenset({"train", *TUNING_STEPS})


def pinned_version(params: Any) -> str | None:
    """The version a run was triggered with, or None for a training run."""
    value = (params or {}).get(PARAM_MODEL_VERSION)
    return str(value) if value not in (None, "") else None


def skip_when_pinned(context: Any) -> None:
    """pre_execute hook of the training stage's tasks: a pinned run trains nothing."""
    from airflow.sdk.exceptions import AirflowSkipException

    version = pinned_version(context.get("params"))
    if version is not None:
        raise AirflowSkipException(f"model_version={version}: this run scores that version")
