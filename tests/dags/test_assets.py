"""Continuous training through Airflow assets, on a real metadata DB and the scheduler's own code.

`airflow db migrate` and `airflow dags reserialize` put the project's DAGs (and the assets they
consume and produce) into a sqlite metadata DB, exactly as the DAG processor would. Then, in a
separate process, an asset event is registered the way the REST API does (AssetManager, source
"api") and the scheduler's DAG-run creation (SchedulerJobRunner._create_dagruns_for_dags, the
method its loop calls) runs once: the training DAG gets an asset-triggered run; a DAG that does
not consume that asset does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest
from conftest import DAGS, REPO

AIRFLOW = REPO / ".venv" / "bin" / "airflow"
PYTHON = REPO / ".venv" / "bin" / "python"

SCHEDULER_ONCE = textwrap.dedent(
    """
    import json, sys
    from sqlalchemy import select
    from airflow.assets.manager import AssetManager
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.asset import AssetModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.sqlalchemy import prohibit_commit

    with create_session() as session:  # what POST /api/v2/assets/events does
        asset = session.scalar(select(AssetModel).where(AssetModel.uri == sys.argv[1]))
        event = AssetManager.register_asset_change(
            asset=asset, extra={"from": "test"}, session=session, source_is_api=True,
            api_user_teams=set(),
        )
        assert event is not None, f"no event for {sys.argv[1]}"
    with create_session() as session:  # one pass of the scheduler loop's run creation
        runner = SchedulerJobRunner(job=Job())
        with prohibit_commit(session) as guard:
            runner._create_dagruns_for_dags(guard, session)
    with create_session() as session:
        runs = session.scalars(select(DagRun)).all()
        print(json.dumps([[r.dag_id, str(r.run_type), r.triggered_by and str(r.triggered_by)]
                          for r in runs]))
    """
)


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory, airflow_home) -> dict[str, str]:
    home = airflow_home(tmp_path_factory.mktemp("airflow-assets"))
    dags = home / "dags"  # the project's modules, starting in 2099: no cron run is due, only
    dags.mkdir()  # what the assets trigger gets created
    for module in DAGS.glob("*.py"):
        text = module.read_text().replace(
            '"schedule":', '"start_date": "2099-01-01", "schedule":', 1
        )
        (dags / module.name).write_text(text)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "PYTHONPATH": str(REPO / "plugins"),
        "MLOPS_RUNTIME": "local",
    }
    done = subprocess.run([str(AIRFLOW), "dags", "reserialize"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return env


def _emit_and_schedule(env: dict[str, str], uri: str) -> list[list[str]]:
    """Every DAG run in the DB after the event and one scheduler pass: [dag_id, type, by]."""
    done = subprocess.run(
        [str(PYTHON), "-c", SCHEDULER_ONCE, uri], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_retrain_request_creates_an_asset_triggered_training_run(airflow_db):
    runs = _emit_and_schedule(airflow_db, "mlops://customer_propensity/acme-foods/retrain")
    triggered = [r for r in runs if "ASSET" in r[1].upper()]
    assert [r[0] for r in triggered] == ["customer_propensity__acme-foods"], runs


@pytest.mark.slow
def test_raw_data_landing_starts_every_model_of_that_customer_and_its_monitoring(airflow_db):
    runs = _emit_and_schedule(airflow_db, "mlops://raw/bella-pasta")
    triggered = sorted(r[0] for r in runs if "ASSET" in r[1].upper() and "bella-pasta" in r[0])
    assert triggered == [
        "customer_propensity__bella-pasta",
        "customer_propensity__bella-pasta__monitor",
        "next_spend__bella-pasta",
        "next_spend__bella-pasta__monitor",
        "preferred_channel__bella-pasta",
        "preferred_channel__bella-pasta__monitor",
    ], runs


def test_the_asset_graph_links_the_loop(dagbag):
    bag = dagbag(DAGS)
    train = bag.dags["customer_propensity__acme-foods"]
    monitor = bag.dags["customer_propensity__acme-foods__monitor"]
    produced = {t.task_id: [a.uri for a in t.outlets] for t in [*train.tasks, *monitor.tasks]}
    base = "mlops://customer_propensity/acme-foods"
    assert produced["ingest"] == [f"{base}/features"]
    assert produced["evaluate"] == [f"{base}/champion"]
    assert produced["publish"] == [f"{base}/scores"]
    assert produced["monitor"] == [f"{base}/outcomes"]
    assert produced["request_retrain"] == [f"{base}/retrain"]
    consumed = {a.uri for a in train.timetable.asset_condition.objects}
    assert consumed == {f"{base}/retrain", "mlops://raw/acme-foods", "mlops://images/manifest"}


def test_continuous_training_settings_choose_the_triggers(dags_folder, dagbag):
    module = (
        (DAGS / "customer_propensity.py")
        .read_text()
        .replace(
            '"defaults": {',
            '"defaults": {"continuous_training": {"on_new_data": False, "on_new_image": False},',
        )
    )
    bag = dagbag(dags_folder({"customer_propensity.py": module}))
    train = bag.dags["customer_propensity__acme-foods"]
    consumed = {a.uri for a in train.timetable.asset_condition.objects}
    assert consumed == {"mlops://customer_propensity/acme-foods/retrain"}


def test_a_control_fraction_out_of_range_names_the_file_and_field(dags_folder, dagbag):
    module = (
        (DAGS / "customer_propensity.py")
        .read_text()
        # the module's defaults already have a crm section (its campaign): the bad value goes in it
        .replace('"crm": {', '"crm": {"control_fraction": 0.7,', 1)
    )
    bag = dagbag(dags_folder({"customer_propensity.py": module}))
    (error,) = [e for f, e in bag.import_errors.items() if f.endswith("customer_propensity.py")]
    assert "dags/customer_propensity.py" in error or "customer_propensity.py" in error
    assert "crm.control_fraction" in error and "0.5" in error
    # the other modules keep working
    assert "next_spend__acme-foods" in bag.dags
