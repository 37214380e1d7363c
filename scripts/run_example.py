"""`make run`: the example models end to end on this machine, through Airflow, local runtime.

Starts the embedded platform on loopback (local S3 endpoint, MLflow server, CRM receiver; one
definition: embedded/platform.py), generates the example data for the chosen customers, runs each
chosen DAG (model x customer) with `airflow dags test`, side by side, prints a summary from the
tasks' XCom results, and stops the services. Exits non-zero if any run failed. Everything lives
under var/run/ (recreated on each run).

By default: every model in dags/, each with its first customer (within the 5-minute budget on 2
cores); ``--model M`` (repeatable) runs all customers of M, ``--customer C`` narrows to C.
``--tune`` (``make run TUNE=1``) turns the tuning stage on for every DAG with a small search
(EXAMPLE_TUNING, through the platform's settings layer MLOPS_TUNING; docs/reference.md "Tuning").
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "plugins"))  # mlplatform_contract (embedded/ imports it)
from example_report import (  # noqa: E402
    Progress,
    StepTime,
    airflow_results,
    console,
    summary,
    summary_rows,
    summary_text,
    where_the_time_went,
)

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
# a small search for `make run TUNE=1`: 4 trials, 2 at a time, the worse half stopped halfway
EXAMPLE_TUNING = {"enabled": True, "trials": 4, "parallel_trials": 2, "halving": {"enabled": True}}
# The loop's second half: the days after the data date the generator writes (long enough for
# every example model's label window, 14 and 28 days), and the monitoring runs' data date.
OUTCOME_DAYS = 28
MONITOR_DATE = "2026-07-27"


def run(cmd: list[str], env: dict[str, str], **kw: Any) -> int:
    return subprocess.run(cmd, env=env, check=False, **kw).returncode


def follow(cmd: list[str], env: dict[str, str], log: Path, progress: Progress) -> int:
    """Run a DAG run's command into its log file, showing each step's start and end as it goes."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            progress.line(line)
        return proc.wait()


def example_dags() -> dict[str, list[str]]:
    """model (pipeline) -> its customers, in module order, from every DAG module in dags/."""
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


@dataclass
class DagRun:
    """One finished DAG run: its tasks (state, duration, XCom result) and its steps' times."""

    results: dict[str, Any]
    times: dict[str, StepTime]


def run_dag(dag_id: str, env: dict[str, str], width: int, data_date: str = DATA_DATE) -> DagRun:
    """One DAG (model x customer) through `airflow dags test`, in its own Airflow home (own sqlite
    DB, a copy of the migrated template), so DAGs can run side by side."""
    home = VAR / "airflow" / dag_id
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy2(TEMPLATE_HOME / "airflow.db", home / "airflow.db")
    env = {**env, "AIRFLOW_HOME": str(home)}
    log = VAR / f"{dag_id}.log"
    progress = Progress(dag_id, width)
    module = REPO / "dags" / f"{dag_id.split('__', 1)[0]}.py"  # parse only the DAG's own module
    rc = follow([str(AIRFLOW), "dags", "test", dag_id, data_date, "--dagfile-path", str(module),
                 "--conf", json.dumps({"data_date": data_date})], env, log, progress)  # fmt: skip
    verdict = "[green]succeeded" if rc == 0 else "[red]failed"
    console.print(f"  {dag_id:<{width}} {verdict}[/] (log: {log})", highlight=False)
    return DagRun(airflow_results(home / "airflow.db", dag_id), progress.times)


def run_dags(
    dags: list[str], env: dict[str, str], parallel: int, data_date: str
) -> dict[str, DagRun]:
    width = max(len(d) for d in dags)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {d: pool.submit(run_dag, d, env, width, data_date) for d in dags}
        return {d: f.result() for d, f in futures.items()}


class Clock:
    """Wall time per phase of the run, for the closing "took …" line."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self._mark = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self._mark
        self._mark = now


def close_the_loop(
    platform: Any, customers: list[str], dags: list[str], env: dict[str, str], args: Any,
    clock: Clock,
) -> dict[str, DagRun]:  # fmt: skip
    """The outcome window after the data date (the generator knows who converts and who got the
    campaigns), then each customer's monitoring DAG on it."""
    console.rule(f"[bold]{OUTCOME_DAYS} days later: outcomes land, monitoring runs")
    for customer, info in land_outcomes(
        platform.lake, customers, env, OUTCOME_DAYS, args.size
    ).items():
        console.print(f"  outcome window {info['outcome_window']} for {customer}: "
                      f"treated {info['treated']}")  # fmt: skip
    clock.lap("outcomes")
    runs = run_dags([f"{d}__monitor" for d in dags], env, args.parallel, MONITOR_DATE)
    clock.lap("monitoring DAGs")
    return runs


def show_platform(platform: Any, env: dict[str, str]) -> None:
    services = platform.services
    console.print(f"  MLflow server:     {services['tracking_uri']}")
    console.print(f"  local S3 endpoint: {services['s3_endpoint']} (scores in {env['SCORES_URI']})")
    console.print(f"  CRM receiver:      {platform.crm_url}")
    gateway = platform.pushgateway_url or f"none: the steps push no metrics ({INSTALL_HINT})"
    console.print(f"  Pushgateway:       {gateway}")
    for customer in platform.generated:
        console.print(f"  generated raw zone for {customer}")


def parse_args() -> argparse.Namespace:
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
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    shutil.rmtree(VAR, ignore_errors=True)
    VAR.mkdir(parents=True)
    env = {**base_env(), **airflow_env()}
    if args.tune:
        env["MLOPS_TUNING"] = json.dumps(EXAMPLE_TUNING)
    clock = Clock()
    chosen_dags = choose(example_dags(), args.model, args.customer)
    chosen = sorted({d.split("__", 1)[1] for d in chosen_dags})
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as background:
        migrated = background.submit(migrate_template, env)
        console.rule("[bold]embedded services and example data")
        platform = stack.enter_context(
            embedded_platform(VAR, chosen, size=args.size, log=console.print)
        )
        env.update(platform.env)
        show_platform(platform, env)
        migrated.result()
        clock.lap("services, data and Airflow DB")
        console.rule(f"[bold]{len(chosen_dags)} DAG runs ({args.parallel} at a time)")
        runs = run_dags(chosen_dags, env, args.parallel, DATA_DATE)
        clock.lap("training DAGs")
        runs |= close_the_loop(platform, chosen, chosen_dags, env, args, clock)
        monitoring = monitoring_report(platform)  # while the gateway still runs
    clock.lap("stopping the services")
    return report(runs, platform, monitoring, clock)


def report(runs: dict[str, DagRun], platform: Any, monitoring: list[str], clock: Clock) -> int:
    """The summary table, where the metrics and notifications went, the time; 1 if a run failed."""
    caption = f"MLflow (stopped with the services): {platform.services['tracking_uri']}"
    times = {dag_id: run.times for dag_id, run in runs.items()}
    rows = summary_rows({d: r.results for d, r in runs.items()}, times)
    if console.is_terminal:
        console.print(summary(rows, caption))
    else:  # a log file: one line per task, never wrapped
        for line in summary_text(rows, caption):
            console.print(line, highlight=False, markup=False)
    for line in monitoring + where_the_time_went(clock.phases, times):
        console.print(line, highlight=False)
    console.print(f"lake: {platform.lake}; logs: {VAR}/<DAG id>.log", highlight=False)
    kept = VAR / "services" / "s3"
    console.print(f"kept after the run: models and reports in {kept}/mlflow-artifacts, scores in "
                  f"{kept}/mlops-scores; `make mlflow-ui` opens the registry on them",
                  highlight=False)  # fmt: skip
    failed = [d for d, r in runs.items() if r.results["state"] != "success"]
    if failed:
        console.print(f"[red]failed runs: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
