"""The step CLI: arguments, result file, exit codes and the log line, as runtimes see them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from model_steps import cli
from model_steps.contract import (
    EXIT_SKIP_DOWNSTREAM,
    RESULT_LOG_PREFIX,
    SkipDownstream,
    StepContext,
    StepError,
    run_key,
)

ARGS = ["evaluate", "--pipeline", "customer_propensity", "--customer", "acme-foods",
        "--run-id", "manual__2026-03-01T00:00:00+00:00", "--data-date", "2026-03-01"]  # fmt: skip


@pytest.fixture
def xcom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "xcom" / "return.json"
    monkeypatch.setenv("STEP_XCOM_PATH", str(path))
    monkeypatch.setenv("STEP_CONFIG", '{"gate": {"metric": "roc_auc"}}')
    monkeypatch.setenv("STEP_PARAMS", '{"force_promote": true}')
    return path


def with_body(monkeypatch: pytest.MonkeyPatch, body: Any) -> None:
    monkeypatch.setattr(cli, "_step_body", lambda step: body)


def test_result_is_written_and_logged(xcom: Path, monkeypatch, capsys) -> None:
    seen: list[StepContext] = []

    def body(ctx: StepContext) -> dict[str, Any]:
        seen.append(ctx)
        return {"auc": 0.8}

    with_body(monkeypatch, body)
    assert cli.main(ARGS) == 0
    assert json.loads(xcom.read_text()) == {"auc": 0.8}
    assert RESULT_LOG_PREFIX + '{"auc": 0.8}' in capsys.readouterr().out
    (ctx,) = seen
    assert ctx.config == {"gate": {"metric": "roc_auc"}}
    assert ctx.params == {"force_promote": True}
    assert str(ctx.data_date) == "2026-03-01"


def test_skip_downstream_exit_code_and_reason(xcom: Path, monkeypatch) -> None:
    def body(ctx: StepContext) -> dict[str, Any]:
        raise SkipDownstream("below threshold", {"auc": 0.51})

    with_body(monkeypatch, body)
    assert cli.main(ARGS) == EXIT_SKIP_DOWNSTREAM
    assert json.loads(xcom.read_text()) == {
        "skipped": True,
        "reason": "below threshold",
        "auc": 0.51,
    }


def test_step_error_is_reported_without_traceback(xcom: Path, monkeypatch, caplog) -> None:
    def body(ctx: StepContext) -> dict[str, Any]:
        raise StepError("orders.csv line 7: amount -3.0 is negative")

    with_body(monkeypatch, body)
    assert cli.main(ARGS) == 1
    assert "step evaluate failed: orders.csv line 7: amount -3.0 is negative" in caplog.text
    assert "Traceback" not in caplog.text
    assert not xcom.exists()


def test_a_certain_failure_exits_3_with_what_to_fix(xcom: Path, monkeypatch, caplog) -> None:
    from model_steps.contract import EXIT_CHECK_FAILED, CheckFailed

    def body(ctx: StepContext) -> dict[str, Any]:
        raise CheckFailed("validation failed: column label", "fix the label hook.")

    with_body(monkeypatch, body)
    assert cli.main(ARGS) == EXIT_CHECK_FAILED == 3
    assert "To fix: fix the label hook." in caplog.text and "clear the task" in caplog.text
    assert not xcom.exists()


def test_only_rank_zero_reports(xcom: Path, monkeypatch) -> None:
    with_body(monkeypatch, lambda ctx: {"rank": "any"})
    monkeypatch.setenv("HOROVOD_RANK", "1")
    assert cli.main(ARGS) == 0
    assert not xcom.exists()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--customer", "ACME"], "customer id 'ACME'"),
        (["--data-date", "03/01/2026"], "not YYYY-MM-DD"),
        (["--pipeline", "Bad-Name"], "pipeline 'Bad-Name'"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(bad: list[str], message: str, xcom: Path) -> None:
    args = list(ARGS)
    args[args.index(bad[0]) + 1] = bad[1]
    out = subprocess.run(
        [sys.executable, "-m", "model_steps", *args], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert message in out.stderr


def test_unknown_step_is_a_usage_error(xcom: Path, tmp_path: Path) -> None:
    """A name that cannot be a step is refused by the parser; a well-formed name the model has no
    step for (Model.steps) is refused once the model is known, naming the model's steps."""
    import os

    bad = subprocess.run(
        [sys.executable, "-m", "model_steps", "Deploy!"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid choice: 'Deploy!'" in bad.stderr
    env = {**os.environ, "LAKE_URI": f"file://{tmp_path}", "STEP_CONFIG": "{}",
           "STEP_MODEL": '{"ref": "mlmodels.customer_propensity"}'}  # fmt: skip
    unknown = subprocess.run(
        [sys.executable, "-m", "model_steps", "deploy", *ARGS[1:]],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert unknown.returncode == 2
    assert "model customer_propensity has no step 'deploy' (its steps: none" in unknown.stdout


def test_run_key_is_safe_stable_and_distinct() -> None:
    a = run_key("manual__2026-03-01T00:00:00+00:00")
    assert a == run_key("manual__2026-03-01T00:00:00+00:00")
    assert a != run_key("manual__2026-03-01T00:00:00+01:00")
    assert all(ch.isalnum() or ch in "._-" for ch in a)
