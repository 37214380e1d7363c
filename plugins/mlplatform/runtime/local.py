"""The local runtime: the step's command as a subprocess of the Airflow worker.

It runs the exact argv and environment a pod would get, in the workload virtualenv, and maps the
outcome the way KubernetesPodOperator does: the XCom file becomes the task's return value, the skip
exit code skips the task (and so everything downstream), any other non-zero code fails it.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from mlplatform.steps import ENV_XCOM_PATH, EXIT_SKIP_DOWNSTREAM

REPO_ROOT = Path(__file__).resolve().parents[3]
# Where `make setup` puts the workload venv; a deployment using the local runtime sets the variable.
DEFAULT_STEPS_VENV = REPO_ROOT / ".venv-steps"
# Variables of the control plane's own interpreter that must not leak into the workload venv.
_CONTROL_PLANE_ONLY = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")


def steps_venv() -> Path:
    return Path(os.environ.get("MLOPS_STEPS_VENV", DEFAULT_STEPS_VENV))


class LocalStepOperator(BaseOperator):
    """Run one step of the contract as a local process and stream its output into the task log."""

    template_fields: Sequence[str] = ("arguments", "env_vars")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        arguments: list[str],
        env_vars: dict[str, str] | None = None,
        skip_on_exit_code: int = EXIT_SKIP_DOWNSTREAM,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.arguments = arguments
        self.env_vars = env_vars or {}
        self.skip_on_exit_code = skip_on_exit_code
        self._process: subprocess.Popen[str] | None = None

    def resolved_command(self) -> list[str]:
        """``python``/``horovodrun`` in the contract's argv become the workload venv's programs."""
        bin_dir = steps_venv() / "bin"
        programs = {"python": bin_dir / "python", "horovodrun": bin_dir / "horovodrun"}
        command = [str(programs.get(self.arguments[0], self.arguments[0])), *self.arguments[1:]]
        if not Path(command[0]).exists() and self.arguments[0] in programs:
            raise AirflowException(
                f"{command[0]} does not exist: the workload venv {steps_venv()} lacks "
                f"{self.arguments[0]!r}. Run `make setup`, or point MLOPS_STEPS_VENV at a venv "
                "with images/steps and its extras installed."
            )
        # horovodrun starts `python` itself: make that the venv's interpreter too.
        return [str(bin_dir / "python") if arg == "python" and i > 0 else arg
                for i, arg in enumerate(command)]  # fmt: skip

    def execute(self, context: Any) -> Any:
        with tempfile.TemporaryDirectory(prefix="step-xcom-") as tmp:
            xcom_path = Path(tmp) / "return.json"
            env = {k: v for k, v in os.environ.items() if k not in _CONTROL_PLANE_ONLY}
            env.update(self.env_vars)
            env.update({ENV_XCOM_PATH: str(xcom_path), "PYTHONUNBUFFERED": "1"})
            bin_dir = str(steps_venv() / "bin")
            env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
            command = self.resolved_command()
            self.log.info("Running step command: %s", shlex.join(command))
            exit_code, tail = self._run(command, env)
            result = json.loads(xcom_path.read_text()) if xcom_path.exists() else None
        if exit_code == self.skip_on_exit_code:
            reason = (result or {}).get("reason", "the step asked to skip downstream")
            raise AirflowSkipException(f"step exited with {exit_code}: {reason}")
        if exit_code != 0:
            last = "\n".join(tail)
            raise AirflowException(f"step exited with code {exit_code}; last output:\n{last}")
        if result is None:
            raise AirflowException(
                f"step exited 0 but wrote no result to {ENV_XCOM_PATH}: the contract requires one"
            )
        return result

    def _run(self, command: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
        tail: collections.deque[str] = collections.deque(maxlen=20)
        # A new session, so on_kill can stop horovodrun and every rank it started.
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", bufsize=1, start_new_session=True, cwd=tempfile.gettempdir(),
        )  # fmt: skip
        assert self._process.stdout is not None
        try:
            for line in self._process.stdout:
                line = line.rstrip("\n")
                tail.append(line)
                self.log.info("%s", line)
            return self._process.wait(), list(tail)
        except BaseException:  # task timeout or kill: never leave the step running behind us
            self.on_kill()
            raise

    def on_kill(self) -> None:
        if self._process and self._process.poll() is None:
            self.log.warning("Stopping step process group %s", self._process.pid)
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
