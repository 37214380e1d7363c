"""The monitoring DAG's automatic rollback (settings monitoring.auto_rollback; mlplatform.rollback):
with the setting on, request_rollback and rollback follow the monitor step; a requested rollback
renders the training DAG's trigger form (the pinned params, actor automatic) that its own params
accept, and anything else skips. With the setting off (the default) the tasks do not exist."""

from __future__ import annotations

import copy
import json
import re
import textwrap
from typing import Any

import pytest
from conftest import REPO

from mlplatform.rollback import rollback_conf
from mlplatform_contract.results import EXAMPLES, RollbackRequest

MODULE = '''
"""Airflow DAG module of a model whose monitor may roll back."""
from mlplatform import register_pipeline

register_pipeline(globals(), {
    "name": "customer_propensity", "model": "mlmodels.customer_propensity",
    "task": "binary_classification", "owner": "growth-ml", "description": "Rolls back.",
    "steps": {"ingest": {}, "validate": {}, "train": {}, "evaluate": {}, "score": {},
              "publish": {}},
    "defaults": {"monitoring": {"auto_rollback": AUTO}},
    "tiers": {"t": {}}, "customers": [{"id": "acme-foods", "tier": "t"}],
})
'''
REQUESTED = RollbackRequest(
    requested=True, reasons=["…"], from_version="5", to_version="3",
    scored_run_key="scheduled__2026-06-30T05_00_00_00_00", reason="automatic rollback: v5 uplift "
    "verdict harm on scored run scheduled__2026-06-30T05_00_00_00_00 (monitor run m1); v3 held",
)  # fmt: skip


class TaskInstance:
    def __init__(self, payloads: dict[str, Any]):
        self.payloads = payloads

    def xcom_pull(self, task_ids: str, key: str = "return_value") -> Any:
        return self.payloads.get(task_ids)


def monitor_xcom(request: RollbackRequest) -> dict[str, Any]:
    return EXAMPLES["monitor"].model_copy(update={"rollback": request}).to_xcom()


def _bag(tmp_path, dags_folder, dagbag, auto: bool):
    folder = dags_folder({"rolls_back.py": textwrap.dedent(MODULE).replace("AUTO", str(auto))},
                         with_project=False)  # fmt: skip
    bag = dagbag(folder)
    assert bag.import_errors == {}
    return bag


def test_the_setting_adds_the_rollback_after_the_monitor(tmp_path, dags_folder, dagbag) -> None:
    bag = _bag(tmp_path, dags_folder, dagbag, auto=True)
    monitor = bag.dags["customer_propensity__acme-foods__monitor"]
    after = {"request_retrain", "request_rollback"}
    assert monitor.get_task("monitor").downstream_task_ids == after
    trigger = monitor.get_task("rollback")
    assert trigger.upstream_task_ids == {"request_rollback"}
    assert type(trigger).__name__ == "TriggerDagRunOperator"
    assert trigger.trigger_dag_id == "customer_propensity__acme-foods"
    assert trigger.skip_when_already_exists  # the same failure seen twice: one rollback run
    assert "Automatic rollback is on" in monitor.doc_md


def test_a_wrong_setting_names_the_file_and_the_field(tmp_path, dags_folder, dagbag) -> None:
    text = textwrap.dedent(MODULE).replace("AUTO", '"sometimes"')
    bag = dagbag(dags_folder({"rolls_back.py": text}, with_project=False))
    [error] = bag.import_errors.values()
    assert "rolls_back.py" in error and "monitoring.auto_rollback" in error, error


def test_off_by_default_no_rollback_task(tmp_path, dags_folder, dagbag) -> None:
    bag = _bag(tmp_path, dags_folder, dagbag, auto=False)
    monitor = bag.dags["customer_propensity__acme-foods__monitor"]
    assert {t.task_id for t in monitor.tasks} == {"monitor", "request_retrain"}


def test_a_requested_rollback_renders_the_training_dags_trigger_form(
    tmp_path, dags_folder, dagbag
) -> None:
    from airflow.sdk.definitions.param import ParamsDict

    bag = _bag(tmp_path, dags_folder, dagbag, auto=True)
    monitor = bag.dags["customer_propensity__acme-foods__monitor"]
    returned = rollback_conf(TaskInstance({"monitor": monitor_xcom(REQUESTED)}))
    ti = TaskInstance({"request_rollback": returned})
    trigger = monitor.get_task("rollback")
    trigger.render_template_fields({"ti": ti}, jinja_env=monitor.get_template_env())
    assert trigger.trigger_run_id == "auto_rollback__v5_scheduled__2026-06-30T05_00_00_00_00"
    conf = {
        "model_version": "3", "make_champion": True, "reason": REQUESTED.reason,
        "actor": "automatic", "replaces_version": "5",
    }  # fmt: skip
    assert returned["conf"] == conf
    assert json.loads(trigger.conf) == conf  # rendered as JSON; the operator parses it back
    # the training DAG's own params accept it (the pinned run's form: mlplatform.pinning)
    training = bag.dags["customer_propensity__acme-foods"]
    params = ParamsDict(copy.deepcopy(training.params))
    params.update(conf)
    validated = params.validate()
    assert {name: validated[name] for name in conf} == conf


def test_the_documented_rollback_command_is_a_valid_trigger_form(
    tmp_path, dags_folder, dagbag
) -> None:
    """docs/model-lifecycle.md's `airflow dags trigger <dag> --conf '...'`: the training DAG's
    params accept each documented conf (a rollback by hand, actor operator by default)."""
    from airflow.sdk.definitions.param import ParamsDict

    doc = (REPO / "docs" / "model-lifecycle.md").read_text()
    found = re.findall(r"airflow dags trigger (\S+) \\?\s*--conf '(\{.*?\})'", doc, re.S)
    assert found, "no `airflow dags trigger ... --conf` in docs/model-lifecycle.md"
    training = _bag(tmp_path, dags_folder, dagbag, auto=False).dags[
        "customer_propensity__acme-foods"
    ]
    for dag_id, text in found:
        assert dag_id == training.dag_id
        conf = json.loads(text)
        params = ParamsDict(copy.deepcopy(training.params))
        params.update(conf)
        validated = params.validate()
        assert validated["make_champion"] is True and validated["actor"] == "operator"
        assert {name: validated[name] for name in conf} == conf


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        (None, "the monitor step gave no decision"),
        (RollbackRequest(requested=False, reasons=["v5 held"]), "no rollback: v5 held"),
    ],
)
def test_no_request_skips_the_rollback(payload, said) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    xcom = None if payload is None else monitor_xcom(payload)
    with pytest.raises(AirflowSkipException, match=said):
        rollback_conf(TaskInstance({"monitor": xcom}))
