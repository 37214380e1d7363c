"""`make run`: the example pipeline end to end on this machine, through Airflow, local runtime.

Starts the embedded services on loopback (local S3 endpoint, MLflow server, CRM receiver), generates
the example data for every customer of dags/customer_propensity.py, runs each customer's DAG with
`airflow dags test`, prints a summary from the tasks' XCom results, and stops the services. Exits
non-zero if any run failed. Everything lives under var/run/ (recreated on each run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
VAR = REPO / "var" / "run"
STEPS_PY = REPO / ".venv-steps" / "bin" / "python"
AIRFLOW = REPO / ".venv" / "bin" / "airflow"
SCORES_BUCKET = "mlops-scores"
DATA_DATE = (
    "2026-06-29"  # the example data's last drop day (restaurant_chain.datagen.DEFAULT_DATA_DATE)
)
console = Console()


def run(
    cmd: list[str], env: dict[str, str], log: Path | None = None, label: str = "", **kw: Any
) -> int:
    """Run a command; with a log file, echo each task step to the console as it goes."""
    if log is None:
        return subprocess.run(cmd, env=env, check=False, **kw).returncode
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if "Running step command:" in line and "model_steps " in line:
                step = line.split("model_steps ", 1)[1].split()[0]
                console.print(f"  {label:<12} [cyan]▶[/] {step}")
            elif "Task instance state updated" in line and "new_state=" in line:
                state = line.split("new_state=", 1)[1].split()[0]
                colour = "green" if state == "success" else "yellow" if "retry" in state else "red"
                console.print(f"  {label:<12}   [{colour}]{state}[/]")
        return proc.wait()


@contextmanager
def embedded_services(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """Local S3 endpoint + MLflow server (embedded.services) and the CRM receiver, then stop them."""
    state = VAR / "services"
    command = [str(STEPS_PY), "-m", "embedded.services", "up", "--state", str(state),
               "--bucket", SCORES_BUCKET]  # fmt: skip
    up = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    if up.returncode != 0:
        raise SystemExit(f"embedded services did not start:\n{up.stdout}{up.stderr}")
    try:
        yield json.loads((state / "services.json").read_text())
    finally:
        subprocess.run([str(STEPS_PY), "-m", "embedded.services", "down", "--state", str(state)],
                       env=env, cwd=REPO, check=False)  # fmt: skip


@contextmanager
def crm_receiver(env: dict[str, str]):  # type: ignore[no-untyped-def]
    """The local CRM stand-in (embedded.crm_receiver) on a free loopback port; yields its URL.

    The publish tasks reach it through the Airflow connection crm_default, given here as
    AIRFLOW_CONN_CRM_DEFAULT (the LocalStepOperator turns it into CRM_BASE_URL/CRM_API_TOKEN)."""
    token = "local-crm-token"
    log = (VAR / "crm_receiver.log").open("w")
    proc = subprocess.Popen(
        [str(STEPS_PY), "-m", "embedded.crm_receiver", "--db", str(VAR / "crm.sqlite"),
         "--port", "0", "--token", token],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        raise SystemExit(f"CRM receiver did not start (see {VAR / 'crm_receiver.log'})")
    url = line.split("listening on ", 1)[1].split()[0]
    env["AIRFLOW_CONN_CRM_DEFAULT"] = f"http://:{token}@{url.removeprefix('http://')}"
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def customers() -> list[str]:
    sys.path.insert(0, str(REPO / "plugins"))
    import runpy

    module = runpy.run_path(str(REPO / "dags" / "customer_propensity.py"))
    return sorted(k.split("__", 1)[1] for k in module if k.startswith("customer_propensity__"))


def xcom_results(env: dict[str, str], dag_id: str) -> dict[str, Any]:
    """The latest run's task states and XCom results, read from Airflow's metadata DB."""
    script = f"""
import json
from airflow.models.dagrun import DagRun
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
with create_session() as s:
    dr = s.query(DagRun).filter_by(dag_id={dag_id!r}).order_by(DagRun.id.desc()).first()
    out = {{"state": str(dr.state), "tasks": {{}}}}
    for ti in dr.get_task_instances(session=s):
        row = s.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, task_id=ti.task_id,
                                           key="return_value").first()
        out["tasks"][ti.task_id] = {{"state": str(ti.state),
                                     "result": XComModel.deserialize_value(row) if row else None}}
print(json.dumps(out, default=str))
"""
    out = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", script], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _detail(step: str, r: dict[str, Any]) -> str:
    if step == "ingest":
        return (
            f"training: {r.get('rows')} diners at {r.get('cutoff_date')}, label rate "
            f"{r.get('label_rate')}; population: {r.get('population_rows')} diners"
        )
    if step == "validate":
        return f"{r.get('status')}"
    if step == "train":
        m = r.get("metrics", {})
        return f"{r.get('model_uri')}  holdout AUC {m.get('roc_auc')}  ({r.get('ranks')} ranks)"
    if step == "evaluate":
        verdict = (
            "promoted" if r.get("promote") else "kept champion" if r.get("passed") is False else ""
        )
        return f"{verdict}; scores with {r.get('scoring_model_uri')}"
    if step == "score":
        return f"{r.get('rows')} rows → {r.get('output_uri')}"
    if step == "publish":
        return f"{r.get('sent_records')} records sent to the CRM ({r.get('retries')} retries)"
    return ""


def summary(results: dict[str, dict[str, Any]], services: dict[str, Any]) -> Table:
    table = Table(title="customer_propensity on the embedded default", show_lines=False)
    for column in ("customer", "step", "state", "result"):
        table.add_column(column, overflow="fold")
    for customer, res in results.items():
        for step in ("ingest", "validate", "train", "evaluate", "score", "publish"):
            task = res["tasks"].get(step, {})
            state = task.get("state", "-")
            colour = {"success": "green", "skipped": "yellow"}.get(state, "red")
            detail = _detail(step, task["result"]) if task.get("result") else ""
            table.add_row(
                customer if step == "ingest" else "", step, f"[{colour}]{state}[/]", detail
            )
    table.caption = f"MLflow (stopped with the services): {services['tracking_uri']}"
    return table


def run_customer(customer: str, env: dict[str, str]) -> dict[str, Any]:
    """One customer's DAG through `airflow dags test`, in its own Airflow home (own sqlite DB), so
    customers can run side by side."""
    dag_id = f"customer_propensity__{customer}"
    env = {**env, "AIRFLOW_HOME": str(VAR / "airflow" / customer)}
    if run(
        [str(AIRFLOW), "db", "migrate"], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ):
        raise SystemExit(f"airflow db migrate failed for {customer}")
    log = VAR / f"{dag_id}.log"
    rc = run([str(AIRFLOW), "dags", "test", dag_id, DATA_DATE,
              "--conf", json.dumps({"data_date": DATA_DATE})], env, log=log, label=customer)  # fmt: skip
    console.print(
        f"  {customer:<12} {'[green]succeeded' if rc == 0 else '[red]failed'}[/] (log: {log})"
    )
    return xcom_results(env, dag_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", default="medium", help="example data size (mlmodels.restaurant_chain.datagen)"
    )
    parser.add_argument("--customer", action="append", help="only these customers (default: all)")
    parser.add_argument("--parallel", type=int, default=3, help="customers run side by side")
    args = parser.parse_args()

    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    lake = VAR / "lake"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update({
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(REPO / "plugins"),
        "MLOPS_RUNTIME": "local",
        "LAKE_URI": f"file://{lake}",
    })  # fmt: skip
    started = time.monotonic()
    chosen = args.customer or customers()
    with ExitStack() as stack:
        console.rule("[bold]embedded services")
        services = stack.enter_context(embedded_services(env))
        env.update(services["env"])
        env["SCORES_URI"] = f"s3://{SCORES_BUCKET}"
        crm_url = stack.enter_context(crm_receiver(env))
        console.print(f"  MLflow server:     {services['tracking_uri']}")
        console.print(
            f"  local S3 endpoint: {services['s3_endpoint']} (scores in {env['SCORES_URI']})"
        )
        console.print(f"  CRM receiver:      {crm_url}")
        console.rule("[bold]example data")
        for index, customer in enumerate(chosen):
            # each customer (restaurant chain) gets its own diners: a different seed per chain
            datagen = [str(STEPS_PY), "-m", "mlmodels.restaurant_chain.datagen", "--customer", customer,
                       "--lake", env["LAKE_URI"], "--size", args.size, "--seed", str(7 + index)]  # fmt: skip
            rc = run(datagen, env, stdout=subprocess.DEVNULL)
            if rc != 0:
                raise SystemExit(f"datagen failed for {customer}")
            console.print(f"  generated raw zone for {customer}")
        console.rule(f"[bold]customer DAGs ({args.parallel} at a time)")
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            futures = {c: pool.submit(run_customer, c, env) for c in chosen}
            results = {c: f.result() for c, f in futures.items()}
    console.print(summary(results, services))
    failed = [c for c, r in results.items() if r["state"] != "success"]
    console.print(f"took {time.monotonic() - started:.0f}s; lake: {lake}")
    if failed:
        console.print(f"[red]failed runs: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
