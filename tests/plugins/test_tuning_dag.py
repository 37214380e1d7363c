"""The tuning stage in the DAG: its shape (mapped trials, concurrency cap, trigger rules), its pods
rendered and validated like every other pod, and its settings checked with file and field named.
Tuning off leaves every DAG exactly as it was."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
from conftest import DAGS

from mlplatform.render import render_task
from mlplatform.spec import PipelineSpecError, parse_pipeline, resolve_customers
from mlplatform_contract.steps import trial_value

MODULE = '''
"""Airflow DAG module of a tuned model."""
from mlplatform import register_pipeline

register_pipeline(globals(), {{
    "name": "customer_propensity", "model": "mlmodels.customer_propensity",
    "task": "binary_classification", "owner": "growth-ml", "description": "Tuned.",
    "steps": {{"ingest": {{}}, "validate": {{}}, "train": {train}, "evaluate": {{}}}},
    "defaults": {{"training": {{"epochs": 9}}, "tuning": {tuning}}},
    "tiers": {{"standard": {{}}, "premium": {{"tuning": {{"trials": 12, "parallel_trials": 4}}}}}},
    "customers": [{{"id": "acme-foods", "tier": "premium"}}, {{"id": "bella-pasta", "tier": "standard"}}],
}})
'''
TUNING = {"enabled": True, "trials": 6, "parallel_trials": 2}


def _bag(folder: Path, tuning: dict, train: dict | None = None):
    from airflow.dag_processing.dagbag import DagBag

    text = MODULE.format(tuning=repr(tuning), train=repr(train or {"gpu": 2}))
    (folder / "tuned.py").write_text(textwrap.dedent(text))
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag


def _shape(dag) -> list[tuple[str, str, list[str]]]:
    return [
        (t.task_id, type(t).__name__, sorted(t.upstream_task_ids)) for t in dag.topological_sort()
    ]


def test_tuned_dag_maps_trials_between_validate_and_train(tmp_path, runtime) -> None:
    runtime("local")
    bag = _bag(tmp_path, TUNING)
    dag = bag.dags["customer_propensity__bella-pasta"]
    assert _shape(dag) == [
        ("ingest", "LocalStepOperator", []),
        ("validate", "LocalStepOperator", ["ingest"]),
        ("tune", "LocalStepOperator", ["validate"]),
        ("trial", "MappedOperator", ["tune"]),
        ("select", "LocalStepOperator", ["trial"]),
        ("train", "LocalStepOperator", ["select"]),
        ("evaluate", "LocalStepOperator", ["train"]),
    ]
    trial = dag.get_task("trial")
    assert trial.max_active_tis_per_dagrun == 2
    assert trial.expand_input.value["trial"].operator.task_id == "tune"  # over the tune XCom
    assert dag.get_task("select").trigger_rule == "all_done"  # a failed trial is counted
    # the train profile's Horovod ranks, for every trial; a tier changes the budget
    assert trial.partial_kwargs["arguments"][:3] == ["horovodrun", "-np", "2"]
    assert trial.partial_kwargs["arguments"][-9] == "trial"
    premium = bag.dags["customer_propensity__acme-foods"].get_task("trial")
    assert premium.max_active_tis_per_dagrun == 4
    assert json.loads(premium.partial_kwargs["env_vars"]["STEP_CONFIG"])["tuning"]["trials"] == 12


def test_halving_adds_the_cut_and_a_second_mapped_rung(tmp_path, runtime) -> None:
    runtime("local")
    bag = _bag(tmp_path, {**TUNING, "halving": {"enabled": True, "rung_fraction": 0.3}})
    dag = bag.dags["customer_propensity__bella-pasta"]
    assert [t[:2] for t in _shape(dag)[2:7]] == [
        ("tune", "LocalStepOperator"),
        ("trial", "MappedOperator"),
        ("halve", "LocalStepOperator"),
        ("trial_final", "MappedOperator"),
        ("select", "LocalStepOperator"),
    ]
    final = dag.get_task("trial_final")
    assert final.expand_input.value["trial"].operator.task_id == "halve"
    assert dag.get_task("halve").trigger_rule == "all_done"


def test_tuning_off_leaves_the_example_dags_as_they_are(runtime) -> None:
    from airflow.dag_processing.dagbag import DagBag

    runtime("local")
    bag = DagBag(dag_folder=str(DAGS))
    for dag in bag.dags.values():
        ids = [t.task_id for t in dag.topological_sort()]
        assert not {"tune", "trial", "select"} & set(ids), dag.dag_id
        if dag.dag_id.endswith("__monitor"):  # the monitoring DAG: no training chain
            assert ids == ["monitor", "request_retrain"]
            continue
        assert ids[:6] == ["ingest", "validate", "train", "evaluate", "score", "publish"]


def test_mapped_trial_pods_render_valid_on_the_train_profile(tmp_path, runtime, manifest_file):
    runtime("kubernetes", manifest_file())
    dag = _bag(tmp_path, TUNING).dags["customer_propensity__bella-pasta"]
    pods = {t.task_id: render_task(t) for t in dag.tasks}
    for pod in pods.values():
        kubernetes_validate.validate(pod, "1.33.0", strict=True)
    trial = pods["trial"]
    base = next(c for c in trial["spec"]["containers"] if c["name"] == "base")
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "2"  # the train step's profile
    assert trial["spec"]["nodeSelector"]["mlops.io/node-pool"] == "gpu"
    assert trial["spec"]["serviceAccountName"] == "step-train"
    env = {e["name"]: e.get("value") for e in base["env"]}
    assert json.loads(env["STEP_TRIAL"])["name"] == "trial-00"
    assert base["command"] == ["horovodrun"] and "trial" in base["args"]
    assert trial["metadata"]["labels"]["mlops.io/step"] == "trial"
    for light in ("tune", "select"):  # no GPU to plan or pick
        limits = next(c for c in pods[light]["spec"]["containers"] if c["name"] == "base")
        assert "nvidia.com/gpu" not in limits["resources"]["limits"]
        assert pods[light]["spec"]["nodeSelector"]["mlops.io/node-pool"] == "cpu"
        assert pods[light]["spec"]["serviceAccountName"] == "step-train"


def test_a_multi_node_profile_tunes_with_one_pod_per_trial(tmp_path, runtime, manifest_file):
    runtime("kubernetes", manifest_file())
    dag = _bag(tmp_path, TUNING, {"gpu": 4, "nodes": 2}).dags["customer_propensity__bella-pasta"]
    assert type(dag.get_task("train")).__name__ == "MPIJobOperator"
    assert render_task(dag.get_task("trial"))["kind"] == "Pod"


def _spec(tuning: dict, tiers: dict | None = None, task: str = "binary_classification") -> dict:
    return {
        "name": "churn", "model": "mlmodels.churn", "task": task, "owner": "t",
        "description": "d", "steps": {"train": {}}, "defaults": {"tuning": tuning},
        "tiers": tiers or {"t": {}}, "customers": [{"id": "acme-foods", "tier": "t"}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("tuning", "tiers", "task", "message"),
    [
        ({"objective": "rmse"}, None, "binary_classification",
         r"customers\[0\] \(acme-foods\)\.settings\.tuning\.objective: 'rmse' is not a "
         r"binary_classification metric"),
        ({"trials": 2, "min_successful_trials": 3}, None, "regression",
         r"settings\.tuning: min_successful_trials must not exceed trials"),
        ({}, {"t": {"tuning": {"trails": 3}}}, "regression",
         r"settings\.tuning\.trails: unknown field"),
        ({"halving": {"rung_fraction": 1.5}}, None, "regression",
         r"tuning\.halving\.rung_fraction: Input should be less than 1"),
    ],
)  # fmt: skip
def test_tuning_settings_errors_name_file_and_field(tuning, tiers, task, message) -> None:
    with pytest.raises(PipelineSpecError, match=message) as err:
        resolve_customers(
            parse_pipeline(_spec(tuning, tiers, task), "dags/churn.py"), "dags/churn.py"
        )
    assert "dags/churn.py" in str(err.value)


def test_the_platform_layer_turns_tuning_on_below_the_module(monkeypatch) -> None:
    monkeypatch.setenv("MLOPS_TUNING", json.dumps({"enabled": True, "trials": 4}))
    spec = parse_pipeline(_spec({"trials": 3}), "dags/churn.py")
    [customer] = resolve_customers(spec, "dags/churn.py")
    assert customer.settings.tuning.enabled and customer.settings.tuning.trials == 3  # module wins
    monkeypatch.setenv("MLOPS_TUNING", "[1]")
    with pytest.raises(PipelineSpecError, match="MLOPS_TUNING"):
        resolve_customers(spec, "dags/churn.py")


def test_a_mapped_task_gets_its_trial_not_the_pair() -> None:
    trial = {"name": "trial-03", "index": 3, "params": {"training.learning_rate": 0.004}}
    assert json.loads(trial_value(("trial-03", trial))) == trial  # Airflow's (key, value)
    assert json.loads(trial_value(trial)) == trial


def test_parallel_trials_of_the_example_modules_fit_the_namespace_quota(monkeypatch) -> None:
    """At most parallel_trials trial pods of the train profile at once (max_active_tis_per_dagrun):
    with make run's search turned on, every example customer's concurrent trials fit the GPU and
    CPU quota of helm/platform (a run's trials alone, the bound the DAG itself controls)."""
    import runpy

    import yaml

    import mlplatform
    from mlplatform.profiles import quantity_value

    quota = yaml.safe_load((DAGS.parent / "helm/platform/values.yaml").read_text())["resourceQuota"]
    example = runpy.run_path(str(DAGS.parent / "scripts/run_example.py"))["EXAMPLE_TUNING"]
    monkeypatch.setenv("MLOPS_TUNING", json.dumps(example))
    specs: list = []
    monkeypatch.setattr(mlplatform, "register_pipeline", lambda g, spec: specs.append(spec))
    for module in sorted(DAGS.glob("*.py")):
        runpy.run_path(str(module))
    for spec in specs:
        for customer in resolve_customers(parse_pipeline(spec, "dags/x.py"), "dags/x.py"):
            tuning, train = customer.settings.tuning, customer.profiles["train"]
            at_once = min(tuning.parallel_trials, tuning.trials)
            assert at_once * train.gpu <= int(quota["requests.nvidia.com/gpu"]), customer.dag_id
            assert at_once * quantity_value(train.cpu) <= quantity_value(quota["requests.cpu"])
