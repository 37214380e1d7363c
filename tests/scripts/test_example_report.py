"""What `make run` prints (scripts/example_report.py), read as a log file would show it: the full DAG
id and the step on every progress line, and a summary whose URIs are not broken across lines.
(test_airflow_dags_test.py reads a real DAG run's DB and log with the same code.)"""

from __future__ import annotations

import io
import sys

import pytest
from conftest import REPO
from rich.console import Console

from mlplatform_contract.results import EXAMPLES

sys.path.insert(0, str(REPO / "scripts"))
import example_report
from example_report import (
    Progress,
    StepTime,
    summary,
    summary_rows,
    summary_text,
    where_the_time_went,
)

DAG_ID = "next_spend__acme-foods__monitor"
LOG = [
    "[2026-12-04 07:01:02] INFO - Running step command: /x/.venv-steps/bin/python -m model_steps "
    "monitor --pipeline next_spend --customer acme-foods --run-id r --data-date 2026-07-27",
    "2026-12-04 07:01:40 INFO model_steps: step monitor done in 38.2s: start-up 14.0s "
    "(interpreter 1.1s, import pyspark 0.9s, spark session 8.0s, import mlflow 4.0s), work 24.2s",
    "[2026-12-04 07:01:41] INFO - Task instance state updated new_state=success rows_affected=1",
]


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """example_report's console as it is when stdout is a log file (not a terminal)."""
    out = io.StringIO()
    monkeypatch.setattr(example_report, "console", Console(file=out, width=250))
    return out


def test_every_progress_line_names_the_whole_dag_and_the_step(printed: io.StringIO) -> None:
    progress = Progress(DAG_ID, len(DAG_ID))
    for line in LOG:
        progress.line(line)
    lines = printed.getvalue().splitlines()
    assert len(lines) == 3 and all(line.strip().startswith(DAG_ID) for line in lines)
    assert [line.split(DAG_ID)[1].split()[:2] for line in lines] == [
        ["▶", "monitor"],
        ["■", "monitor"],
        ["monitor:", "success"],
    ]
    assert "start-up 14.0s, work 24.2s" in lines[1]
    assert progress.times == {
        "monitor": StepTime(
            38.2,
            14.0,
            "interpreter 1.1s, import pyspark 0.9s, spark session 8.0s, import mlflow 4.0s",
        )
    }


def test_the_summary_is_one_line_per_task_in_a_log_file_and_a_table_in_a_terminal(
    printed: io.StringIO,
) -> None:
    uri = (
        "s3://mlops-scores/customer_propensity/customer=acme-foods/"
        "run=manual__2026-06-29T00_00_00_00_00-b0866f72"
    )
    score = EXAMPLES["score"].model_copy(update={"rows": 4000, "output_uri": uri}).to_xcom()
    results = {
        "customer_propensity__acme-foods": {
            "state": "success",
            "tasks": {
                "score": {"state": "success", "duration": 31.0,
                          "result": score},
                "ingest": {"state": "success", "duration": 40.0, "result": None},
            },
        }
    }  # fmt: skip
    times = {"customer_propensity__acme-foods": {"score": StepTime(30.0, 12.0)}}
    rows = summary_rows(results, times)
    assert [r[:2] for r in rows] == [("customer_propensity__acme-foods", "ingest"), ("", "score")]
    assert rows[1][2:5] == ("success", "31", "12")  # the task's time, the step's start-up
    lines = summary_text(rows, "MLflow: http://127.0.0.1:5000")
    (score_line,) = [line for line in lines if " score " in line]
    assert score_line.endswith(f"4000 rows → {uri}")  # whole, on the task's own line
    header = next(line for line in lines if line.startswith("DAG"))
    assert header.index("result") == score_line.index("4000")  # aligned columns
    example_report.console.print(summary(rows, "caption"))  # the terminal's table
    assert "customer_propensity__acme-foods" in printed.getvalue()


def test_where_the_time_went_adds_up_the_phases_and_the_start_up_share() -> None:
    lines = where_the_time_went(
        {"services": 20.0, "training DAGs": 150.0},
        {"a": {"ingest": StepTime(40.0, 10.0)}, "b": {"train": StepTime(60.0, 20.0)}},
    )
    assert lines[0] == "took 170s: services 20s, training DAGs 150s"
    assert "2 step processes ran 100s" in lines[1] and "30s start-up (30%), 70s work" in lines[1]


def test_the_summary_shows_the_push_arithmetic() -> None:
    """Selected, held out as control and sent, each said: "top 10 %" is visibly not 10 % sent."""
    publish = EXAMPLES["publish"].model_copy(update={
        "scored_rows": 12000, "selected": 1200, "records": 1063, "retries": 0,
        "arms": {"treated": 1063, "control": 137}, "owned": 1200, "lost": 0})  # fmt: skip
    line = example_report.push_arithmetic(publish)
    assert line == (
        "12000 scored → 1200 selected (10.0% of scored) → 137 held out as control (never sent) "
        "→ 1063 sent to the CRM (8.9% of scored); 0 retries"
    )
    lost = example_report.push_arithmetic(
        publish.model_copy(update={"selected": 1300, "lost": 100})
    )
    assert "1300 selected (10.8% of scored) → 100 lost to other campaigns of the day or the cap → " \
        "137 held out" in lost  # fmt: skip


def test_the_monitor_line_shows_the_campaign_figures_on_one_line() -> None:
    """What the campaign learned, its allocation by segment, the regret and the OPE table's DR
    column, in the one summary row (a log file never wraps it: summary_text)."""
    line = example_report.detail("monitor", EXAMPLES["monitor"].model_dump(mode="json"))
    assert (
        "campaign spring learned from 1801 treated (conversion mean 0.06), policy prior → "
        "manual__2026-06-01-9f8e7d6c; allocation gold: pct10 50%; regret 6.2; OPE (DR, per "
        "contact) logged 0.0600 [0.0530, 0.0670], uniform 0.0600 [0.0530, 0.0670], greedy 0.0660 "
        "[0.0560, 0.0760]"
    ) in line
    rows = [("d", "monitor", "success", "1", "1", line)]
    text = example_report.summary_text(rows, "caption")
    assert len(text) == 4 and text[2].endswith(line)  # title, header, the row whole, caption


def test_the_train_line_names_the_logged_candidate_not_a_version() -> None:
    """Train registers nothing (the gate does): its line names the run and digest it logged."""
    train = EXAMPLES["train"].model_copy(update={
        "mlflow_run_id": "6f1c0a9b2d", "model_digest": "ab" * 32, "ranks": 1,
        "metrics": {"roc_auc": 0.74}})  # fmt: skip
    line = example_report.detail("train", train.model_dump(mode="json"))
    assert line == "candidate run 6f1c0a9b (digest abababababab)  holdout roc_auc 0.74  (1 rank)"


def test_the_monitor_line_of_a_model_with_classes_shows_its_realized_metrics() -> None:
    """A model with several classes realizes macro F1 and accuracy, not AUC or RMSE."""
    monitor = EXAMPLES["monitor"].model_copy(update={
        "realized": {"log_loss": 0.67, "macro_f1": 0.329, "accuracy": 0.78, "recall_app": 0.4}})  # fmt: skip
    line = example_report.detail("monitor", monitor.model_dump(mode="json"))
    assert line.startswith("realized macro_f1 0.329, accuracy 0.780")
