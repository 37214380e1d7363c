"""A run pinned to a model version (re-score, backfill, rollback) through the training DAG's own
trigger form: the training stage skips, the gate runs after a skipped training, the form refuses a
version that is not a version number (mlplatform.pinning)."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
from conftest import DAGS

from mlplatform.pinning import pinned_version, skip_when_pinned
from mlplatform.tuning import unmapped_sample

TUNED = '''
"""Airflow DAG module of a tuned model."""
from mlplatform import register_pipeline

register_pipeline(globals(), {
    "name": "customer_propensity", "model": "mlmodels.customer_propensity",
    "task": "binary_classification", "owner": "growth-ml", "description": "Tuned.",
    "steps": {"ingest": {}, "validate": {}, "train": {}, "evaluate": {}, "score": {},
              "publish": {}},
    "defaults": {"tuning": {"enabled": True, "trials": 4, "parallel_trials": 2}},
    "tiers": {"t": {}}, "customers": [{"id": "acme-foods", "tier": "t"}],
})
'''


def _bag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag


def _hook(task):
    if type(task).__name__ == "MappedOperator":
        task = unmapped_sample(task)
    return task._pre_execute_hook  # what Airflow's task runner calls before execute


@pytest.mark.parametrize("runtime_name", ["local", "kubernetes"])
def test_training_stage_skips_and_the_gate_still_runs(
    runtime, runtime_name, manifest_file, tmp_path
) -> None:
    runtime(runtime_name, manifest_file() if runtime_name == "kubernetes" else None)
    (tmp_path / "tuned.py").write_text(textwrap.dedent(TUNED))
    dag = _bag(tmp_path).dags["customer_propensity__acme-foods"]
    hooks = {t.task_id: _hook(t) for t in dag.tasks}
    training = {"tune", "trial", "select", "train"}
    assert {k for k, hook in hooks.items() if hook is skip_when_pinned} == training
    assert {k for k, hook in hooks.items() if hook is None} == set(hooks) - training
    assert dag.get_task("evaluate").trigger_rule == "none_failed"  # runs after a skipped train
    assert dag.get_task("score").trigger_rule == "all_success"


def test_a_pinned_run_skips_training_and_an_unpinned_one_trains() -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException, match="model_version=3: this run scores"):
        skip_when_pinned({"params": {"model_version": "3", "make_champion": True}})
    skip_when_pinned({"params": {"model_version": None}})  # trains: no exception
    skip_when_pinned({"params": {}})
    assert pinned_version({"model_version": ""}) is None
    assert pinned_version({"model_version": "12"}) == "12"


def test_the_trigger_form_refuses_what_is_not_a_version_number() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.param import ParamsDict
    from airflow.sdk.exceptions import ParamValidationError

    dag = DagBag(dag_folder=str(DAGS)).dags["customer_propensity__acme-foods"]
    for bad in ("latest", "0", "3; rm -rf /", "{{ conn.crm.password }}"):
        params = ParamsDict(copy.deepcopy(dag.params))
        with pytest.raises(ParamValidationError, match="does not match"):
            params["model_version"] = bad
    good = ParamsDict(copy.deepcopy(dag.params))
    good["model_version"] = "7"
    assert good.validate()["model_version"] == "7"
