"""What `make run` shows: each step as it starts and ends, then one summary table.

Read by scripts/run_example.py. Two sources, both written by the runs themselves:

* the DAG run's log (``airflow dags test``'s output): the local runtime logs ``Running step command:
  … model_steps <step> …`` when a step starts, and the step CLI ends with ``step <step> done in
  41.0s: start-up 13.2s (interpreter 1.4s, import tensorflow 9.1s), work 27.8s``
  (model_steps/startup.py); Airflow logs each task's new state;
* the run's sqlite metadata DB: task states, durations and the steps' XCom results, read with the
  standard library (Airflow's import alone costs seconds per DAG run, four runs per ``make run``).

Everything printed names the full DAG id and the step, and nothing wraps when stdout is a log file:
the summary is then plain aligned lines, one per task, instead of a table.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mlplatform_contract.results import (
    CampaignFigures,
    EvaluateResult,
    IngestResult,
    MonitorResult,
    PublishResult,
    ScoreResult,
    SelectResult,
    TrainResult,
    ValidateResult,
    parse_result,
)
from mlplatform_contract.steps import MONITOR_STEP, STEP_KINDS, TUNING_STEPS

# a log file or CI: a console wide enough for the summary's URIs (COLUMNS still wins)
_TERMINAL = sys.stdout.isatty()
console = Console(
    width=None if _TERMINAL else int(os.environ.get("COLUMNS", 160)), soft_wrap=not _TERMINAL
)

# the summary's task order: the contract's steps, the tuning stage between validate and train
STEP_ORDER = (*STEP_KINDS[:2], *TUNING_STEPS[:3], "trial_final", TUNING_STEPS[3], *STEP_KINDS[2:],
              MONITOR_STEP, "request_retrain")  # fmt: skip
STEP_STARTED = re.compile(r"Running step command: .*?model_steps (?P<step>[a-z0-9_]+) ")
STEP_ENDED = re.compile(
    r"step (?P<step>[a-z0-9_]+) (?P<how>done|failed|skipped downstream) in (?P<total>[\d.]+)s: "
    r"start-up (?P<startup>[\d.]+)s(?: \((?P<detail>[^)]*)\))?, work (?P<work>[\d.]+)s"
)
STATE = re.compile(r"Task instance state updated.*?new_state=(?P<state>[A-Za-z_.]+)")


@dataclass
class StepTime:
    """One step process's wall time, split as the step CLI split it."""

    total: float
    startup: float
    detail: str = ""


@dataclass
class Progress:
    """Follows one DAG run's log: prints each step's start and end, keeps each step's time."""

    dag_id: str
    width: int
    current: str = "-"
    times: dict[str, StepTime] = field(default_factory=dict)

    def line(self, text: str) -> None:
        if started := STEP_STARTED.search(text):
            self.current = started["step"]
            self._print(f"[cyan]▶[/] {self.current}")
        elif ended := STEP_ENDED.search(text):
            step = ended["step"]
            if step not in self.times:  # under horovodrun every rank reports; rank 0 is first
                self.times[step] = StepTime(
                    float(ended["total"]), float(ended["startup"]), ended["detail"] or ""
                )
                colour = "red" if ended["how"] == "failed" else "green"
                self._print(f"[{colour}]■[/] {step} {ended['how']} in {ended['total']}s "
                            f"(start-up {ended['startup']}s, work {ended['work']}s)")  # fmt: skip
        elif state := STATE.search(text):
            value = state["state"].removeprefix("TaskInstanceState.").lower()
            colour = "green" if value == "success" else "yellow" if "retry" in value else "red"
            self._print(f"  {self.current}: [{colour}]{value}[/]")

    def _print(self, text: str) -> None:
        console.print(f"  {self.dag_id:<{self.width}} {text}", highlight=False)


def _json_value(raw: Any) -> Any:
    """An XCom value as stored: JSON, sometimes a JSON string of JSON (XComModel.serialize_value)."""
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def airflow_results(db: Path, dag_id: str) -> dict[str, Any]:
    """The latest run of ``dag_id`` in an Airflow sqlite DB: its state, and per task its state,
    duration and XCom result (a mapped task's instances as ``task[0]``, ``task[1]``…)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        run = con.execute(
            "SELECT id, run_id, state FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1",
            (dag_id,),
        ).fetchone()
        if run is None:
            return {"state": "not run", "run_id": None, "tasks": {}}
        run_pk, run_id, state = run
        xcoms = {
            (task, index): _json_value(value)
            for task, index, value in con.execute(
                "SELECT task_id, map_index, value FROM xcom WHERE dag_run_id = ? "
                "AND key = 'return_value'",
                (run_pk,),
            )
        }
        tasks = {}
        for task, index, ti_state, duration in con.execute(
            "SELECT task_id, map_index, state, duration FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? ORDER BY map_index",
            (dag_id, run_id),
        ):
            key = task if index < 0 else f"{task}[{index}]"
            tasks[key] = {"state": ti_state or "none", "duration": duration,
                          "result": xcoms.get((task, index))}  # fmt: skip
    return {"state": state, "run_id": run_id, "tasks": tasks}


def detail(step: str, payload: dict[str, Any]) -> str:
    """A step's result in one line of the summary (its XCom read with the step's result model)."""
    r = parse_result(step, payload)
    if isinstance(r, IngestResult):
        return (
            f"training: {r.rows} rows at {r.cutoff_date}, label mean "
            f"{r.label_rate}; population: {r.population_rows}"
        )
    if isinstance(r, ValidateResult):
        return r.status
    if isinstance(r, TrainResult):
        # train logs a candidate (the gate registers it): its run and digest, not a version
        headline = next((m for m in ("roc_auc", "log_loss", "rmse") if m in r.metrics), None)
        figure = f"holdout {headline} {r.metrics[headline]}" if headline else "holdout: no metric"
        ranks = f"{r.ranks} rank" + ("s" if r.ranks != 1 else "")
        return (
            f"candidate run {r.mlflow_run_id[:8]} (digest {r.model_digest[:12]})  {figure}  "
            f"({ranks})"
        )
    if isinstance(r, SelectResult):
        return (
            f"best {r.trial}: {r.objective} {r.value:.4f} on validation, "
            f"{r.finished} trials finished; params {json.dumps(r.params)}"
        )
    if isinstance(r, EvaluateResult):
        verdict = "promoted" if r.promote else "kept champion" if not r.passed else ""
        return f"{verdict}; scores with {r.scoring_model_uri}"
    if isinstance(r, ScoreResult):
        return f"{r.rows} rows → {r.output_uri}"
    if isinstance(r, PublishResult):
        return push_arithmetic(r)
    if isinstance(r, MonitorResult):
        return _monitor_detail(r)
    flat = payload.items() if isinstance(payload, dict) else ()
    return ", ".join(f"{k}={v}" for k, v in flat if isinstance(v, int | float | str))[:160]


def push_arithmetic(r: PublishResult) -> str:
    """The publish step's funnel: scored -> selected by the model -> held out as control (never
    sent) -> sent, so "top 10 %" visibly becomes about 9 % sent with a 10 % control group."""
    scored = r.scored_rows

    def share(n: int) -> str:
        return f" ({n / scored:.1%} of scored)" if scored else ""

    lost = f" → {r.lost} lost to other campaigns of the day or the cap" if r.lost else ""
    return (
        f"{scored} scored → {r.selected} selected{share(r.selected)}{lost} → "
        f"{r.arms.get('control')} held out as control (never sent) → {r.records} sent to the CRM"
        f"{share(r.records)}; {r.retries} retries"
    )


def _monitor_detail(r: MonitorResult) -> str:
    m, up = r.realized, r.uplift
    headline = ("roc_auc", "pr_auc", "rmse", "mae", "macro_f1", "accuracy", "lift_top_decile")
    shown = [k for k in headline if k in m]
    realized = ", ".join(f"{k} {m[k]:.3f}" for k in shown) or "nothing monitored yet"
    if up.get("verdict") in (None, "inconclusive"):
        uplift = f"uplift {up.get('verdict', 'n/a')}: {up.get('reason', '')}"
    else:
        uplift = (
            f"uplift treated - control {up['difference']:+.4f} "
            f"[{up['ci_low']:+.4f}, {up['ci_high']:+.4f}] ({up['confidence']:.0%}) "
            f"{up['verdict']}, {up['n_treated']} treated / {up['n_control']} control"
        )
    retrain = "retrain requested" if r.retrain.requested else "no retrain"
    learned = f"; {campaign_detail(r.campaign)}" if r.campaign else ""
    return f"realized {realized}; {uplift}{learned}; {retrain}; report {r.report_uri}"


def campaign_detail(c: CampaignFigures) -> str:
    """The campaign's figures in one clause: what it learned, the allocation it ran with per
    segment (the leading variant's share), the regret, and the off-policy table's DR column."""

    def dr(policy: str) -> str:
        e = c.ope.get(policy, {}).get("dr")
        if e is None or e.value is None:
            return f"{policy} n/a"
        return f"{policy} {e.value:.4f} [{e.low:.4f}, {e.high:.4f}]"

    leaders = ", ".join(f"{s}: {max(v, key=v.get)} {max(v.values()):.0%}"
                        for s, v in sorted(c.shares.items()))  # fmt: skip
    return (
        f"campaign {c.campaign} learned from {c.contacts} treated ({c.reward} mean "
        f"{c.mean_reward}), policy {c.based_on} → {c.state_version}; allocation {leaders or 'n/a'}; "
        f"regret {sum(c.regret.values()):.1f}; OPE (DR, per contact) "
        + ", ".join(dr(p) for p in ("logged", "uniform", "greedy"))
    )


def _order(task: str) -> tuple[int, str]:
    base = task.split("[", 1)[0]
    return (STEP_ORDER.index(base) if base in STEP_ORDER else len(STEP_ORDER), task)


def summary_rows(
    results: dict[str, dict[str, Any]], times: dict[str, dict[str, StepTime]]
) -> list[tuple[str, str, str, str, str, str]]:
    """One row per task of every DAG run: DAG, step, state, task s, start-up s, result."""
    rows = []
    for dag_id, res in results.items():
        for i, (task, ti) in enumerate(sorted(res["tasks"].items(), key=lambda kv: _order(kv[0]))):
            step_time = times.get(dag_id, {}).get(task.split("[", 1)[0])
            duration = ti.get("duration")
            rows.append((
                dag_id if i == 0 else "", task, ti.get("state", "-"),
                f"{duration:.0f}" if duration else "",
                f"{step_time.startup:.0f}" if step_time else "",
                detail(task, ti["result"]) if ti.get("result") else "",
            ))  # fmt: skip
    return rows


HEADER = ("DAG", "step", "state", "task s", "start-up s", "result")


def summary(rows: list[tuple[str, ...]], caption: str) -> Table:
    """The rows as a table, for a terminal (a log file gets :func:`summary_text`)."""
    table = Table(title="the example models on the embedded default", caption=caption)
    for column in HEADER:
        table.add_column(column, overflow="fold", no_wrap=column in ("DAG", "step"))
    for row in rows:
        colour = {"success": "green", "skipped": "yellow"}.get(row[2], "red")
        table.add_row(*row[:2], f"[{colour}]{row[2]}[/]", *row[3:])
    return table


def summary_text(rows: list[tuple[str, ...]], caption: str) -> list[str]:
    """The rows as plain lines for a log file: aligned columns, each row on one line however long
    its result (a URI is never broken), so grep and a pager read it whole."""
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER) - 1)]
    lines = []
    for row in [HEADER, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return ["the example models on the embedded default", *lines, caption]


def where_the_time_went(
    phases: dict[str, float], times: dict[str, dict[str, StepTime]]
) -> list[str]:
    """The run's phases, and how much of the steps' time was start-up (interpreter, imports, JVM)."""
    total = sum(phases.values())
    lines = ["took " + f"{total:.0f}s: " + ", ".join(f"{k} {v:.0f}s" for k, v in phases.items())]
    steps = [t for per_dag in times.values() for t in per_dag.values()]
    if steps:
        step_total = sum(t.total for t in steps)
        startup = sum(t.startup for t in steps)
        lines.append(
            f"{len(steps)} step processes ran {step_total:.0f}s in all (side by side, on "
            f"{os.cpu_count()} cores): {startup:.0f}s start-up ({startup / step_total:.0%}), "
            f"{step_total - startup:.0f}s work"
        )
    return lines
