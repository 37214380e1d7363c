"""The customer_propensity DAG's publish task through the local runtime, end to end: the factory's
LocalStepOperator resolves the Airflow connection ``crm_default`` (here AIRFLOW_CONN_CRM_DEFAULT)
into the step's environment, runs ``python -m model_steps publish`` in the workload venv, and the
local CRM receiver ends up with the run's top-scored diners. Skipped without the workload venv."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException
from conftest import DAGS, REPO

from mlplatform.render import render_context
from mlplatform.runtime.local import steps_venv

RUN_ID = "manual__2026-06-29T06:00:00+00:00"
TOKEN = "dag-test-token-31f0a7"


def _workload_ready() -> bool:
    python = steps_venv() / "bin" / "python"
    probe = [str(python), "-c", "import pyarrow, model_steps.steps.publish"]
    return python.exists() and subprocess.run(probe, capture_output=True).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _workload_ready(), reason="workload venv without the publish extra"),
]

WRITE_SCORES = textwrap.dedent("""
    import sys
    import pyarrow as pa
    import datetime as dt
    from model_steps import lake
    from model_steps.contract import StepContext
    from model_steps.scoring import scores_table_uri
    from model_steps.features import POPULATION
    ctx = StepContext(step="score", pipeline="customer_propensity", customer="acme-foods",
                      run_id=sys.argv[2], data_date=dt.date(2026, 6, 29),
                      env={"LAKE_URI": sys.argv[1]})
    n = 500
    ids = [f"d{i:04d}" for i in range(n)]
    lake.commit_parquet_table(scores_table_uri(ctx), [pa.table({"diner_id": ids,
                                                "score": [i / n for i in range(n)],
                                                "model_version": ["3"] * n})])
    # what ingest commits: the population, with the segment the campaign allocates per
    lake.commit_parquet_table(ctx.lake_path(POPULATION), [pa.table({"diner_id": ids,
                                  "segment": [f"s{i % 4}" for i in range(n)]})])
""")


@pytest.fixture
def receiver(tmp_path):
    proc = subprocess.Popen(
        [str(steps_venv() / "bin" / "python"), "-m", "embedded.crm_receiver", "--db",
         str(tmp_path / "crm.sqlite"), "--port", "0", "--token", TOKEN],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert "listening on" in line, line
    yield line.split("listening on ", 1)[1].split()[0]
    proc.terminate()
    proc.wait(timeout=10)


def _execute(task) -> dict:
    context = render_context(task, run_id=RUN_ID)
    task.render_template_fields(context)
    return task.execute(context)


def test_publish_task_sends_the_top_fraction_with_the_connections_token(
    runtime, dagbag, tmp_path, monkeypatch, receiver, capsys
):
    import urllib.request

    lake = f"file://{tmp_path}/lake"
    subprocess.run([str(steps_venv() / "bin" / "python"), "-c", WRITE_SCORES, lake, RUN_ID],
                   check=True, capture_output=True)  # fmt: skip
    monkeypatch.setenv("LAKE_URI", lake)
    host_port = receiver.removeprefix("http://")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DEFAULT", f"http://:{TOKEN}@{host_port}")
    runtime("local")
    dag = dagbag(DAGS).dags["customer_propensity__acme-foods"]
    task = dag.get_task("publish")

    result = _execute(task)
    assert result["selected"] == 100  # top 20% of 500 (platform default top_fraction)
    assert result["records"] == result["arms"]["treated"] == 100 - result["arms"]["control"]
    assert result["sent_batches"] == result["batches"] and result["retries"] == 0
    req = urllib.request.Request(receiver + "/_stats")
    stats = json.loads(urllib.request.urlopen(req, timeout=5).read())
    assert stats["contacts"] == result["records"] and stats["duplicate_writes"] == 0
    campaign = lake.removeprefix("file://") + "/campaign/customer_propensity/customer=acme-foods"
    [manifest] = [json.loads(p.read_text()) for p in Path(campaign).rglob("_MANIFEST.json")]
    assert manifest["policy_version"] == "prior"  # each treated diner got a declared variant
    assert set(manifest["shares"]) == {"s0", "s1", "s2", "s3"}
    assert TOKEN not in capsys.readouterr().out
    assert not any("CRM_" in k for k in task.env_vars)

    # a wrong token in the connection: the task fails with the step's message, token masked
    monkeypatch.setenv("AIRFLOW_CONN_CRM_DEFAULT", f"http://:not-{TOKEN}@{host_port}")
    for path in (tmp_path / "lake" / "publish").rglob("progress.json"):
        path.unlink()
    with pytest.raises(AirflowException, match=r"(?s)code 1.*refused the credentials") as err:
        _execute(dag.get_task("publish"))
    assert TOKEN not in str(err.value) and TOKEN not in capsys.readouterr().out
