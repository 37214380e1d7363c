"""The local runtime runs real commands through the contract, as the pod would."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from mlplatform.runtime.local import LocalStepOperator, steps_venv

WRITE_RESULT = (
    "import json, os, sys\n"
    "print('line one'); print('line two', file=sys.stderr)\n"
    "json.dump({{'rows': 42, 'config': json.loads(os.environ['STEP_CONFIG']),"
    " 'pythonpath': os.environ.get('PYTHONPATH')}}, open(os.environ['STEP_XCOM_PATH'], 'w'))\n"
    "sys.exit({code})\n"
)


def operator(
    arguments: list[str], env: dict[str, str] | None = None, **kwargs
) -> LocalStepOperator:
    env_vars = {"STEP_CONFIG": '{"k": 1}'} if env is None else env
    return LocalStepOperator(task_id="step", arguments=arguments, env_vars=env_vars, **kwargs)


def test_venv_python_runs_and_xcom_is_returned(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/control/plane/only")
    result = operator(["python", "-c", WRITE_RESULT.format(code=0)]).execute({})
    assert result == {"rows": 42, "config": {"k": 1}, "pythonpath": None}
    log = capsys.readouterr().out
    assert "line one" in log and "line two" in log  # streamed into the task log
    assert str(steps_venv() / "bin" / "python") in log


def test_steps_get_lineage_the_worker_can_override(monkeypatch) -> None:
    import subprocess

    from mlplatform.runtime.local import REPO_ROOT

    script = (
        "import json, os\n"
        "json.dump({k: os.environ.get(k) for k in ('MLOPS_GIT_SHA', 'MLOPS_IMAGE_DIGEST')},"
        " open(os.environ['STEP_XCOM_PATH'], 'w'))\n"
    )
    head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    monkeypatch.delenv("MLOPS_GIT_SHA", raising=False)
    monkeypatch.delenv("MLOPS_IMAGE_DIGEST", raising=False)
    lineage = operator(["python", "-c", script]).execute({})
    assert lineage == {"MLOPS_GIT_SHA": head or None, "MLOPS_IMAGE_DIGEST": f"local:{steps_venv()}"}
    monkeypatch.setenv("MLOPS_GIT_SHA", "f" * 40)
    assert operator(["python", "-c", script]).execute({})["MLOPS_GIT_SHA"] == "f" * 40


SHOW_REGISTRY_ENV = (
    "import json, os\n"
    "keys = ('MLFLOW_TRACKING_USERNAME', 'MLFLOW_TRACKING_PASSWORD', 'MLOPS_REGISTRY_CREDENTIALS')\n"
    "json.dump({k: os.environ.get(k) for k in keys}, open(os.environ['STEP_XCOM_PATH'], 'w'))\n"
    "print('my password is', os.environ.get('MLFLOW_TRACKING_PASSWORD'))\n"
)


def test_a_step_gets_only_its_own_registry_identity(monkeypatch, tmp_path, capsys) -> None:
    identities = tmp_path / "identities.json"
    identities.write_text(
        json.dumps({"scorer@acme-foods": "s3cret-scorer", "gate@acme-foods": "g"})
    )
    monkeypatch.setenv("MLOPS_REGISTRY_CREDENTIALS", str(identities))
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")  # the worker's own: never passed on
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "admin-password")
    argv = ["python", "-c", SHOW_REGISTRY_ENV]
    seen = operator(argv, registry_user="scorer@acme-foods").execute({})
    assert seen == {"MLFLOW_TRACKING_USERNAME": "scorer@acme-foods",
                    "MLFLOW_TRACKING_PASSWORD": "s3cret-scorer",
                    "MLOPS_REGISTRY_CREDENTIALS": None}  # fmt: skip
    assert "s3cret-scorer" not in capsys.readouterr().out  # masked in the task log
    # a step that never calls MLflow (ingest, publish, a model's own step) gets no identity
    assert set(operator(argv).execute({}).values()) == {None}
    # an identity that was never granted fails at once, saying what grants it
    with pytest.raises(AirflowFailException, match=r"not in .*identities\.json.*restart"):
        operator(argv, registry_user="scorer@globex").execute({})


def test_skip_exit_code_skips_with_the_steps_reason() -> None:
    script = (
        "import json, os, sys\n"
        "json.dump({'reason': 'candidate below threshold'}, open(os.environ['STEP_XCOM_PATH'], 'w'))\n"
        "sys.exit(99)\n"
    )
    with pytest.raises(AirflowSkipException, match="candidate below threshold"):
        operator(["python", "-c", script]).execute({})


def test_failure_exit_code_fails_with_the_last_output() -> None:
    with pytest.raises(AirflowException, match=r"(?s)exited with code 5.*line two"):
        operator(["python", "-c", WRITE_RESULT.format(code=5)]).execute({})


def test_retryable_failure_is_not_a_non_retryable_one() -> None:
    with pytest.raises(AirflowException) as caught:
        operator(["python", "-c", WRITE_RESULT.format(code=1)]).execute({})
    assert not isinstance(caught.value, AirflowFailException)  # Airflow retries it


def test_missing_lake_setting_fails_at_once_naming_what_sets_it(monkeypatch) -> None:
    """The real step CLI without LAKE_URI exits 2: a failure without retries, whose message names
    the variable, its local default and what sets it."""
    monkeypatch.delenv("LAKE_URI", raising=False)
    args = ["python", "-m", "model_steps", "ingest", "--pipeline", "customer_propensity",
            "--customer", "acme-foods", "--run-id", "r1", "--data-date", "2026-06-29"]  # fmt: skip
    model = '{"ref": "mlmodels.customer_propensity", "task": "binary_classification"}'
    with pytest.raises(AirflowFailException) as caught:
        operator(args, env={"STEP_CONFIG": "{}", "STEP_MODEL": model}).execute({})
    message = str(caught.value)
    assert "exited with code 2 (bad invocation or missing configuration)" in message
    assert "a retry cannot fix it" in message
    assert "LAKE_URI is not set" in message and "make airflow" in message
    assert "step-env" in message


CHECK_FAILED_STEP = (
    "import sys\n"
    "from model_steps import cli\n"
    "from model_steps.contract import CheckFailed\n"
    "def body(ctx):\n"
    "    raise CheckFailed('model churn: its features hook returned no column(s) recency_days',"
    " 'return every declared column.')\n"
    "cli._step_body = lambda step: body\n"
    "sys.exit(cli.main(['ingest', '--pipeline', 'churn', '--customer', 'acme-foods',"
    " '--run-id', 'r1', '--data-date', '2026-06-29']))\n"
)


def test_a_broken_model_contract_fails_at_once_saying_what_to_fix() -> None:
    """The real step CLI raising CheckFailed (a declared column missing, a failed validation) exits
    3: the task fails without its retries, and the log says what to fix and to clear the task."""
    with pytest.raises(AirflowFailException) as caught:
        operator(["python", "-c", CHECK_FAILED_STEP]).execute({})
    message = str(caught.value)
    assert "exited with code 3 (the model broke its declared contract" in message
    assert "a retry cannot fix it" in message
    assert "returned no column(s) recency_days" in message
    assert "To fix: return every declared column." in message and "clear the task" in message


def test_success_without_result_breaks_the_contract() -> None:
    with pytest.raises(AirflowException, match="wrote no result"):
        operator(["python", "-c", "print('forgot')"]).execute({})


def test_real_step_cli_rejects_a_bad_customer_id() -> None:
    args = ["python", "-m", "model_steps", "ingest", "--pipeline", "customer_propensity",
            "--customer", "Not_Valid", "--run-id", "r1", "--data-date", "2026-03-01"]  # fmt: skip
    with pytest.raises(AirflowException, match=r"(?s)exited with code 2.*customer id 'Not_Valid'"):
        operator(args).execute({})


def test_real_step_cli_rejects_bad_step_config() -> None:
    args = ["python", "-m", "model_steps", "evaluate", "--pipeline", "customer_propensity",
            "--customer", "acme-foods", "--run-id", "r1", "--data-date", "2026-03-01"]  # fmt: skip
    op = LocalStepOperator(task_id="s", arguments=args, env_vars={"STEP_CONFIG": "[1, 2"})
    with pytest.raises(
        AirflowException, match=r"(?s)exited with code 2.*STEP_CONFIG is not valid JSON"
    ):
        op.execute({})


def test_missing_workload_venv_is_explained(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_STEPS_VENV", str(tmp_path / "no-venv"))
    with pytest.raises(AirflowException, match=r"lacks 'python'\. Run `make setup`"):
        operator(["python", "-c", "pass"]).execute({})


def test_horovodrun_and_its_python_resolve_to_the_workload_venv(monkeypatch, tmp_path) -> None:
    """horovodrun runs as the workload venv's Horovod launcher module (no build probe), and the
    ranks' ``python`` is the venv's interpreter."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").touch()
    monkeypatch.setenv("MLOPS_STEPS_VENV", str(tmp_path / "venv"))
    op = operator(["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", "python", "-m", "x"])
    python = str(bin_dir / "python")
    assert op.resolved_command() == [
        python, "-m", "model_steps.horovod_launch",
        "-np", "2", "-H", "localhost:2", "--gloo", python, "-m", "x",
    ]  # fmt: skip


def test_on_kill_stops_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    op = operator(["python", "-c", script])
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run_catching(op, errors))
    thread.start()
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    op.on_kill()
    thread.join(timeout=30)
    assert not thread.is_alive()
    child = int(marker.read_text())
    assert (
        not Path(f"/proc/{child}").exists()
        or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    )
    assert errors and "exited with code -15" in str(errors[0])


def _run_catching(op: LocalStepOperator, errors: list[BaseException]) -> None:
    try:
        op.execute({})
    except BaseException as exc:
        errors.append(exc)


def test_factory_builds_local_tasks_with_the_contract_argv(dags_folder, dagbag, runtime) -> None:
    runtime("local")
    dag = dagbag(dags_folder()).dags["customer_propensity__acme-foods"]
    train = dag.get_task("train")
    assert isinstance(train, LocalStepOperator)
    assert train.arguments[:6] == ["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo"]
    ingest = dag.get_task("ingest")
    assert ingest.arguments[:4] == ["python", "-m", "model_steps", "ingest"]
    # each step's registry identity (mlplatform_contract.registry_access); ingest never calls MLflow
    assert (train.registry_user, ingest.registry_user) == ("trainer@acme-foods", None)
    assert dag.get_task("evaluate").registry_user == "gate@acme-foods"
    assert dag.get_task("score").registry_user == "scorer@acme-foods"
    assert dag.get_task("publish").registry_user is None
    config = json.loads(ingest.env_vars["STEP_CONFIG"].value)  # literal(): settings are data
    for task in dag.tasks:  # MLflow never unpickles in a step (a registered model is data)
        assert task.env_vars["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false", task.task_id
    assert config["training"]["epochs"] == 12  # premium tier
