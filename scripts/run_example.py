"""`make run`: the example models end to end on this machine, through Airflow, local runtime.

Starts the embedded platform on loopback (local S3 endpoint, MLflow server, CRM receiver; one
definition: embedded/platform.py), generates the example data for the chosen customers, runs each
chosen DAG (model x customer) with `airflow dags test`, side by side, prints a summary from the
tasks' XCom results, and stops the services. Exits non-zero if any run failed. Everything lives
under var/run/ (recreated on each run).

By default: every model in dags/, each with its first customer (within the 5-minute budget on 2
cores); ``--model M`` (repeatable) runs all customers of M, ``--customer C`` narrows to C.
``--tune`` (``make run TUNE=1``) turns the tuning stage on for every DAG with a small search
(EXAMPLE_TUNING, through the platform's settings layer MLOPS_TUNING; README "Tuning").
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from embedded.platform import (  # noqa: E402
    DATA_DATE,
    airflow_env,
    base_env,
    embedded_platform,
    land_outcomes,
)
from embedded.pushgateway import INSTALL_HINT  # noqa: E402
from embedded.pushgateway import groups as gateway_groups  # noqa: E402

VAR = REPO / "var" / "run"
AIRFLOW = REPO / ".venv" / "bin" / "airflow"
console = Console()
# a small search for `make run TUNE=1`: 4 trials, 2 at a time, the worse half stopped halfway
EXAMPLE_TUNING = {"enabled": True, "trials": 4, "parallel_trials": 2, "halving": {"enabled": True}}
STEP_ORDER = {
    s: i
    for i, s in enumerate(
        (
            "ingest",
            "validate",
            "train",
            "evaluate",
            "score",
            "publish",
            "monitor",
            "request_retrain",
        )
    )
}
# The loop's second half: the days after the data date the generator writes (long enough for
# every example model's label window, 14 and 28 days), and the monitoring runs' data date.
OUTCOME_DAYS = 28
MONITOR_DATE = "2026-07-27"


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


def example_dags() -> dict[str, list[str]]:
    """model (pipeline) -> its customers, in module order, from every DAG module in dags/."""
    sys.path.insert(0, str(REPO / "plugins"))
    import runpy

    found: dict[str, list[str]] = {}
    for module in sorted((REPO / "dags").glob("*.py")):
        for name in runpy.run_path(str(module)):
            if "__" in name and not name.startswith("_") and not name.endswith("__monitor"):
                pipeline, customer = name.split("__", 1)
                found.setdefault(pipeline, []).append(customer)
    return found


def choose(
    dags: dict[str, list[str]], models: list[str] | None, customers: list[str] | None
) -> list[str]:
    """The DAG ids to run: see the module doc for the defaults."""
    unknown = sorted(set(models or []) - set(dags))
    if unknown:
        raise SystemExit(f"no DAG module for model(s) {', '.join(unknown)}: have {', '.join(dags)}")
    chosen = []
    for model in models or list(dags):
        wanted = [c for c in dags[model] if c in customers] if customers else dags[model]
        if not customers and not models:
            wanted = wanted[:1]
        chosen += [f"{model}__{c}" for c in wanted]
    if not chosen:
        raise SystemExit(f"no DAG for customer(s) {', '.join(customers or [])} of {models}")
    return chosen


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
            f"training: {r.get('rows')} rows at {r.get('cutoff_date')}, label mean "
            f"{r.get('label_rate')}; population: {r.get('population_rows')}"
        )
    if step == "validate":
        return f"{r.get('status')}"
    if step == "train":
        m = r.get("metrics", {})
        headline = "roc_auc" if "roc_auc" in m else "rmse"
        return (
            f"{r.get('model_uri')}  holdout {headline} {m.get(headline)}  ({r.get('ranks')} ranks)"
        )
    if step == "select":
        return (
            f"best {r.get('trial')}: {r.get('objective')} {r.get('value'):.4f} on validation, "
            f"{r.get('finished')} trials finished; params {json.dumps(r.get('params'))}"
        )
    if step == "evaluate":
        verdict = (
            "promoted" if r.get("promote") else "kept champion" if r.get("passed") is False else ""
        )
        return f"{verdict}; scores with {r.get('scoring_model_uri')}"
    if step == "score":
        return f"{r.get('rows')} rows → {r.get('output_uri')}"
    if step == "publish":
        arms = r.get("arms") or {}
        return (
            f"{r.get('sent_records')} records sent to the CRM ({r.get('retries')} retries); "
            f"{arms.get('control')} of {r.get('selected')} selected held out as control"
        )
    if step == "monitor":
        return _monitor_detail(r)
    return ", ".join(f"{k}={v}" for k, v in r.items() if isinstance(v, int | float | str))[:160]


def _monitor_detail(r: dict[str, Any]) -> str:
    m, up = r.get("realized") or {}, r.get("uplift") or {}
    shown = [k for k in ("roc_auc", "pr_auc", "rmse", "mae", "lift_top_decile") if k in m]
    realized = ", ".join(f"{k} {m[k]:.3f}" for k in shown) or "nothing monitored yet"
    if up.get("verdict") in (None, "inconclusive"):
        uplift = f"uplift {up.get('verdict', 'n/a')}: {up.get('reason', '')}"
    else:
        uplift = (
            f"uplift treated - control {up['difference']:+.4f} "
            f"[{up['ci_low']:+.4f}, {up['ci_high']:+.4f}] ({up['confidence']:.0%}) "
            f"{up['verdict']}, {up['n_treated']} treated / {up['n_control']} control"
        )
    retrain = "retrain requested" if (r.get("retrain") or {}).get("requested") else "no retrain"
    return f"realized {realized}; {uplift}; {retrain}; report {r.get('report_uri')}"


def summary(results: dict[str, dict[str, Any]], services: dict[str, Any]) -> Table:
    table = Table(title="the example models on the embedded default", show_lines=False)
    for column in ("model", "customer", "step", "state", "result"):
        table.add_column(column, overflow="fold")
    for dag_id, res in results.items():
        model, customer = dag_id.split("__")[:2]
        tasks = sorted(res["tasks"].items(), key=lambda kv: STEP_ORDER.get(kv[0], len(STEP_ORDER)))
        for i, (step, task) in enumerate(tasks):
            state = task.get("state", "-")
            colour = {"success": "green", "skipped": "yellow"}.get(state, "red")
            detail = _detail(step, task["result"]) if task.get("result") else ""
            first = i == 0
            table.add_row(model if first else "", customer if first else "", step,
                          f"[{colour}]{state}[/]", detail)  # fmt: skip
    table.caption = f"MLflow (stopped with the services): {services['tracking_uri']}"
    return table


def monitoring_report(platform: Any) -> list[str]:
    """Where the steps' metrics went (the gateway and the groups it holds) and the notifications
    the runs sent (embedded/platform.py's notification file)."""
    url = platform.pushgateway_url
    if url is None:
        lines = [f"metrics: not pushed, no Pushgateway installed here ({INSTALL_HINT})"]
    else:
        held = gateway_groups(url)
        kept = platform.root / "pushgateway.metrics"
        lines = [
            f"metrics: {len(held)} metric groups (pipeline x customer x step) pushed to the "
            f"Pushgateway {url} (stopped with the platform; its groups are kept in {kept})"
        ]
    notes = platform.notify_file
    sent = notes.read_text().splitlines() if notes.exists() else []
    lines.append(f"notifications: {len(sent)} in {notes}")
    return lines + [f"  {line}" for line in sent]


TEMPLATE_HOME = VAR / "airflow" / "_migrated"


def migrate_template(env: dict[str, str]) -> None:
    """One `airflow db migrate` into a template home, while the platform comes up; every DAG run
    starts from a copy of its sqlite DB instead of migrating its own (~20 s of CPU each)."""
    env = {**env, "AIRFLOW_HOME": str(TEMPLATE_HOME)}
    if run(
        [str(AIRFLOW), "db", "migrate"], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ):
        raise SystemExit("airflow db migrate failed")


def run_dag(dag_id: str, env: dict[str, str], data_date: str = DATA_DATE) -> dict[str, Any]:
    """One DAG (model x customer) through `airflow dags test`, in its own Airflow home (own sqlite
    DB, a copy of the migrated template), so DAGs can run side by side."""
    home = VAR / "airflow" / dag_id
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATE_HOME / "airflow.db", home / "airflow.db")
    env = {**env, "AIRFLOW_HOME": str(home)}
    log = VAR / f"{dag_id}.log"
    label = dag_id.replace("customer_propensity", "propensity")[:24]
    rc = run([str(AIRFLOW), "dags", "test", dag_id, data_date,
              "--conf", json.dumps({"data_date": data_date})], env, log=log, label=label)  # fmt: skip
    console.print(f"  {label:<24} {'[green]succeeded' if rc == 0 else '[red]failed'}[/] ({log})")
    return xcom_results(env, dag_id)


def close_the_loop(
    platform: Any, customers: list[str], dags: list[str], env: dict[str, str], args: Any
) -> dict[str, dict[str, Any]]:
    """The outcome window after the data date (the generator knows who converts and who got the
    campaigns), then each customer's monitoring DAG on it."""
    console.rule(f"[bold]{OUTCOME_DAYS} days later: outcomes land, monitoring runs")
    for customer, info in land_outcomes(
        platform.lake, customers, env, OUTCOME_DAYS, args.size
    ).items():
        console.print(f"  outcome window {info['outcome_window']} for {customer}: "
                      f"treated {info['treated']}")  # fmt: skip
    monitors = [f"{d}__monitor" for d in dags]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {d: pool.submit(run_dag, d, env, MONITOR_DATE) for d in monitors}
        return {d: f.result() for d, f in futures.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", default="medium", help="example data size (mlmodels.restaurant_chain.datagen)"
    )
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    parser.add_argument("--customer", action="append", help="only this customer (repeatable)")
    parser.add_argument("--parallel", type=int, default=3, help="DAG runs side by side")
    parser.add_argument(
        "--tune", action="store_true", help="with the tuning stage (a small search)"
    )
    args = parser.parse_args()

    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    lake = VAR / "lake"
    env = {**base_env(), **airflow_env()}
    if args.tune:
        env["MLOPS_TUNING"] = json.dumps(EXAMPLE_TUNING)
    started = time.monotonic()
    chosen_dags = choose(example_dags(), args.model, args.customer)
    chosen = sorted({d.split("__", 1)[1] for d in chosen_dags})
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as background:
        migrated = background.submit(migrate_template, env)
        console.rule("[bold]embedded services and example data")
        platform = stack.enter_context(
            embedded_platform(VAR, chosen, size=args.size, log=console.print)
        )
        env.update(platform.env)
        services = platform.services
        console.print(f"  MLflow server:     {services['tracking_uri']}")
        console.print(
            f"  local S3 endpoint: {services['s3_endpoint']} (scores in {env['SCORES_URI']})"
        )
        console.print(f"  CRM receiver:      {platform.crm_url}")
        gateway = platform.pushgateway_url or f"none: the steps push no metrics ({INSTALL_HINT})"
        console.print(f"  Pushgateway:       {gateway}")
        for customer in platform.generated:
            console.print(f"  generated raw zone for {customer}")
        migrated.result()
        console.rule(f"[bold]{len(chosen_dags)} DAG runs ({args.parallel} at a time)")
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            futures = {d: pool.submit(run_dag, d, env) for d in chosen_dags}
            results = {d: f.result() for d, f in futures.items()}
        results |= close_the_loop(platform, chosen, chosen_dags, env, args)
        monitoring = monitoring_report(platform)  # while the gateway still runs
    console.print(summary(results, services))
    for line in monitoring:
        console.print(line)
    failed = [c for c, r in results.items() if r["state"] != "success"]
    console.print(f"took {time.monotonic() - started:.0f}s; lake: {lake}")
    if failed:
        console.print(f"[red]failed runs: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
