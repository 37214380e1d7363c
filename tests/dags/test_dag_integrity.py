"""The project's DAG files, parsed by Airflow's own DagBag, as the DAG processor would."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from conftest import DAGS, ML_LIBRARIES, REPO


@pytest.fixture(scope="module")
def project_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors(project_bag) -> None:
    assert project_bag.import_errors == {}


def test_example_models_have_one_dag_per_customer(project_bag) -> None:
    ids = sorted(project_bag.dag_ids)
    training = [
        "customer_propensity__acme-foods",
        "customer_propensity__bella-pasta",
        "customer_propensity__casa-tacos",
        "next_spend__acme-foods",
        "next_spend__bella-pasta",
        "preferred_channel__acme-foods",
        "preferred_channel__bella-pasta",
    ]
    # and beside each, its monitoring DAG (monitor -> request_retrain)
    assert ids == sorted([*training, *(f"{d}__monitor" for d in training)])


def test_every_dag_has_owner_tags_retries_and_docs(project_bag) -> None:
    for dag in project_bag.dags.values():
        assert dag.tags, dag.dag_id
        assert dag.doc_md and dag.dag_id.split("__")[1] in dag.doc_md
        assert dag.max_active_runs == 1
        for task in dag.tasks:
            owner = {"customer_propensity": "growth-ml", "next_spend": "revenue-ml",
                     "preferred_channel": "channels-ml"}  # fmt: skip
            assert task.owner == owner[dag.dag_id.split("__")[0]], (dag.dag_id, task.task_id)
            assert task.retries >= 1, (dag.dag_id, task.task_id)
            assert task.retry_exponential_backoff, (dag.dag_id, task.task_id)
            assert task.execution_timeout is not None


def test_steps_run_in_platform_order(project_bag) -> None:
    dag = project_bag.dags["customer_propensity__acme-foods"]
    order = ["ingest", "validate", "train", "evaluate", "score", "publish"]
    for upstream, downstream in itertools.pairwise(order):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}


def test_a_models_own_step_hangs_off_the_step_it_names(project_bag) -> None:
    """next_spend's spend_report runs after score, beside publish: the DAG shape is the model's."""
    dag = project_bag.dags["next_spend__acme-foods"]
    assert dag.get_task("score").downstream_task_ids == {"publish", "spend_report"}
    assert dag.get_task("spend_report").downstream_task_ids == set()
    assert "spend_report" in dag.doc_md


def test_operators_can_trigger_with_params(project_bag) -> None:
    dag = project_bag.dags["customer_propensity__bella-pasta"]
    params = dag.params.dump()
    assert params == {
        "data_date": None,
        "force_promote": False,
        "model_version": None,
        "make_champion": False,
        "reason": None,
        "actor": "operator",
        "replaces_version": None,
    }
    assert dag.params.get_param("data_date").schema["format"] == "date"


def test_tiers_set_schedule(project_bag) -> None:
    # standard tier overrides the pipeline's daily schedule with a weekly one
    # (the cron of the training DAG's AssetOrTimeSchedule: it also runs on its assets)
    bella = project_bag.dags["customer_propensity__bella-pasta"].timetable
    assert bella.timetable.expression == "0 6 * * 1"
    assert project_bag.dags["customer_propensity__acme-foods"].timetable.timetable.expression == (
        "0 5 * * *"
    )


@pytest.mark.parametrize("runtime", ["local", "kubernetes"])
def test_parsing_dag_files_imports_no_ml_library(runtime: str, tmp_path) -> None:
    """The scheduler parses DAG files every few seconds: heavy imports there time parsing out."""
    manifest = tmp_path / "m.json"
    images = {s: f"r/mlops/{s}@sha256:{'b' * 64}" for s in json.loads('["ingest","validate",'
              '"train","evaluate","score","publish"]')}  # fmt: skip
    manifest.write_text(json.dumps({"images": images}))
    script = (
        "import sys, json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(DAGS)!r})\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "assert bag.dags\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {ML_LIBRARIES!r})))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO / "plugins"),
        "AIRFLOW_HOME": str(tmp_path / "home"),
        "MLOPS_RUNTIME": runtime,
        "MLOPS_IMAGE_MANIFEST": str(manifest),
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
