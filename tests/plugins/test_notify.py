"""Owner notifications: what the notifier writes, that the factory gives every task its
callbacks, and (slow) that Airflow really calls them: a failing task and a rejecting gate, run by
`dag.test()`, each leave one JSON line in the notification file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlplatform import notify
from mlplatform_contract.results import EXAMPLES


def evaluate_xcom(passed: bool, reasons: list[str]) -> dict[str, Any]:
    """An evaluate step's XCom (its EvaluateResult as JSON) with this verdict."""
    return EXAMPLES["evaluate"].model_copy(update={"passed": passed, "reasons": reasons}).to_xcom()


def monitor_xcom(degraded: bool, reasons: list[str]) -> dict[str, Any]:
    update = {"degraded": degraded, "reasons": reasons}
    return EXAMPLES["monitor"].model_copy(update=update).to_xcom()


REPO = Path(__file__).resolve().parents[2]


@dataclass
class TaskInstance:
    """The fields of Airflow's RuntimeTaskInstance the notifier reads."""

    task_id: str
    xcom: Any = None
    dag_id: str = "churn__acme-foods"
    run_id: str = "manual__2026-06-29"
    try_number: int = 1
    pulled: list[str] = field(default_factory=list)

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        self.pulled.append(task_ids)
        return self.xcom


@dataclass
class Task:
    owner: str = "retention-ml"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def notify_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "notifications.jsonl"
    monkeypatch.setenv(notify.ENV_NOTIFY_FILE, str(path))
    monkeypatch.delenv(notify.ENV_NOTIFY_OWNERS, raising=False)
    return path


def test_failure_is_written_with_owner_and_reason(notify_file) -> None:
    ti = TaskInstance("ingest")
    notify.LocalNotifier("failed")({"ti": ti, "task": Task(), "exception": ValueError("no drop")})
    [note] = lines(notify_file)
    assert note["event"] == "failed" and note["owner"] == "retention-ml"
    assert (note["dag_id"], note["task_id"], note["reason"]) == (
        "churn__acme-foods",
        "ingest",
        "no drop",
    )


def test_degraded_only_for_judging_steps_that_say_so(notify_file) -> None:
    degraded = notify.LocalNotifier("degraded")
    healthy = TaskInstance("evaluate", evaluate_xcom(True, ["fine"]))
    degraded({"ti": healthy, "task": Task()})
    other = TaskInstance("score", EXAMPLES["score"].to_xcom())
    degraded({"ti": other, "task": Task()})
    assert lines(notify_file) == [] and other.pulled == [], "only judges' XCom is read"
    rejected = TaskInstance("evaluate", evaluate_xcom(False, ["roc_auc 0.6 < 0.65"]))
    degraded({"ti": rejected, "task": Task()})
    monitor = TaskInstance("monitor", monitor_xcom(True, ["realized roc_auc 0.55"]))
    degraded({"ti": monitor, "task": Task()})
    notify.LocalNotifier("skipped")({"ti": TaskInstance("evaluate"), "task": Task()})
    notes = lines(notify_file)
    assert [(n["task_id"], n["event"]) for n in notes] == [("evaluate", "degraded")] * 1 + [
        ("monitor", "degraded"),
        ("evaluate", "degraded"),
    ]
    assert notes[0]["reason"] == "roc_auc 0.6 < 0.65"
    assert "skipped everything downstream" in notes[2]["reason"]


def test_owner_email_adds_the_smtp_providers_notifier(monkeypatch) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    monkeypatch.setenv(
        notify.ENV_NOTIFY_OWNERS, json.dumps({"retention-ml": {"email": ["a@x.io"]}})
    )
    [channel] = notify.owner_channels("retention-ml", "failed")
    assert isinstance(channel, SmtpNotifier) and channel.to == ["a@x.io"]
    assert notify.owner_channels("someone-else", "failed") == ()
    monkeypatch.setenv(notify.ENV_NOTIFY_OWNERS, "{not json")
    with pytest.raises(ValueError, match="MLOPS_NOTIFY_OWNERS is not JSON"):
        notify.owner_channels("retention-ml", "failed")


def test_factory_gives_every_task_the_owners_callbacks(dags_folder, dagbag) -> None:
    bag = dagbag(dags_folder())
    assert not bag.import_errors
    for dag in bag.dags.values():
        expected = notify.callbacks(dag.default_args["owner"])
        for task in dag.tasks:
            for name in ("on_failure_callback", "on_success_callback", "on_skipped_callback"):
                assert getattr(task, name) == [expected[name]], (dag.dag_id, task.task_id, name)


DAG_TEST = textwrap.dedent(
    """
    \"\"\"Airflow DAG that probes the owner notifications.\"\"\"
    import datetime as dt
    from airflow.sdk import DAG, task
    from mlplatform import notify
    from mlplatform_contract.results import EXAMPLES

    with DAG("notify_probe", schedule=None, start_date=dt.datetime(2026, 1, 1),
             default_args={"owner": "retention-ml", **notify.callbacks("retention-ml")}) as dag:
        @task(task_id="evaluate")
        def evaluate():
            rejected = {"passed": False, "reasons": ["roc_auc 0.61 is below 0.65"]}
            return EXAMPLES["evaluate"].model_copy(update=rejected).to_xcom()

        @task(task_id="ingest", retries=0)
        def ingest():
            raise RuntimeError("raw drop missing")

        evaluate()
        ingest()
    """
)


@pytest.mark.slow
def test_airflow_calls_the_notifier_on_failure_and_on_a_rejecting_gate(
    tmp_path, airflow_home
) -> None:
    home, path = airflow_home(tmp_path / "home"), tmp_path / "notifications.jsonl"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "notify_probe.py").write_text(DAG_TEST)
    env = {**os.environ, "AIRFLOW_HOME": str(home), notify.ENV_NOTIFY_FILE: str(path),
           "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
           "PYTHONPATH": str(REPO / "plugins")}  # fmt: skip
    env.pop(notify.ENV_NOTIFY_OWNERS, None)
    airflow = str(Path(sys.executable).parent / "airflow")
    done = subprocess.run([airflow, "dags", "test", "notify_probe"], env=env,
                          capture_output=True, text=True)  # fmt: skip
    notes = {n["task_id"]: n for n in lines(path)}
    assert set(notes) == {"evaluate", "ingest"}, done.stdout[-3000:] + done.stderr[-3000:]
    assert notes["ingest"]["event"] == "failed" and "raw drop missing" in notes["ingest"]["reason"]
    assert notes["evaluate"]["event"] == "degraded"
    assert notes["evaluate"]["reason"] == "roc_auc 0.61 is below 0.65"
    assert notes["evaluate"]["owner"] == "retention-ml"
