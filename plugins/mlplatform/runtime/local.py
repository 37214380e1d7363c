"""The local runtime: the step's command as a subprocess of the Airflow worker.

It runs the exact argv and environment a pod would get, in the workload virtualenv, and maps the
outcome the way the pod operator does: the XCom file becomes the task's return value, the skip
exit code skips the task (and so everything downstream), a non-retryable code (bad invocation) fails
it without retries, any other non-zero code fails it and leaves the retries to Airflow.
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
from functools import cache
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from mlplatform.invocation import literal_env
from mlplatform_contract.environment import control_plane
from mlplatform_contract.registry_access import (
    ENV_PASSWORD,
    ENV_REGISTRY_CREDENTIALS,
    ENV_USERNAME,
)
from mlplatform_contract.steps import (
    ENV_CRM_API_TOKEN,
    ENV_CRM_BASE_URL,
    ENV_GIT_SHA,
    ENV_IMAGE_DIGEST,
    ENV_TRIAL,
    ENV_XCOM_PATH,
    EXIT_SKIP_DOWNSTREAM,
    HOROVOD_LAUNCHER,
    NON_RETRYABLE_EXIT_CODES,
    trial_value,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
# Where `make setup` puts the workload venv; a deployment using the local runtime sets the variable.
DEFAULT_STEPS_VENV = REPO_ROOT / ".venv-steps"
# Variables of the control plane's own interpreter that must not leak into the workload venv, and
# the worker's own registry access (a step gets only its role's identity, from registry_env).
_CONTROL_PLANE_ONLY = (
    "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME",
    ENV_REGISTRY_CREDENTIALS, ENV_USERNAME, ENV_PASSWORD,
)  # fmt: skip


def steps_venv() -> Path:
    return control_plane().steps_venv or Path(DEFAULT_STEPS_VENV)


@cache
def lineage_env() -> dict[str, str]:
    """The local counterpart of a pod's image digest and CI commit: the workload venv the step runs
    in, and the checkout's commit (when the DAGs run from a git checkout). Read at execute time,
    once per worker process, never at parse time."""
    env = {ENV_IMAGE_DIGEST: f"local:{steps_venv()}"}
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return env
    return {**env, ENV_GIT_SHA: head}


def crm_env(connection_id: str) -> dict[str, str]:
    """``CRM_BASE_URL`` and ``CRM_API_TOKEN`` for the publish step, from an Airflow connection.

    The local runtime's counterpart of the pod's ConfigMap + Secret. The connection's host is the
    base URL when it has a scheme (``https://crm.example.com/api``), else scheme (the connection's
    schema or type when http/https, else https), host and port; the token is its password (or
    ``extra.token``). Values are registered with Airflow's secrets masker and go only into the
    subprocess's environment, never into ``env_vars`` (a rendered template field the UI shows).
    Without the connection, variables already in the worker's environment are used.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret

    try:
        conn = BaseHook.get_connection(connection_id)
    except AirflowNotFoundException:
        inherited = {k: os.environ.get(k, "") for k in (ENV_CRM_BASE_URL, ENV_CRM_API_TOKEN)}
        if all(inherited.values()):
            return inherited  # the worker's own (e.g. a developer's shell): passed on as they are
        raise AirflowFailException(  # configuration: retrying cannot create the connection
            f"the publish step needs the Airflow connection {connection_id!r} (crm.connection_id): "
            "create it in the UI (type http, host = the CRM base URL, password = the API token) "
            f"or set AIRFLOW_CONN_{connection_id.upper()}='http://:<token>@127.0.0.1:8765'"
        ) from None
    host = (conn.host or "").strip().rstrip("/")
    token = conn.password or conn.extra_dejson.get("token") or ""
    if token:
        mask_secret(token)
    if not host or not token:
        missing = " and ".join(n for n, v in (("host", host), ("password", token)) if not v)
        raise AirflowException(f"Airflow connection {connection_id!r} has no {missing}")
    if "://" not in host:
        scheme = next((c for c in (conn.schema, conn.conn_type) if c in ("http", "https")), "https")
        host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")
    return {ENV_CRM_BASE_URL: host, ENV_CRM_API_TOKEN: token}


def resolved(env: dict[str, Any]) -> dict[str, str]:
    """The variables as the process gets them: a literal() not rendered yet (a direct execute())
    is unwrapped, never rendered."""
    return {k: getattr(v, "value", v) for k, v in env.items()}


def registry_env(user: str) -> dict[str, str]:
    """The MLflow credentials of one registry identity, from the identities file the platform's
    provisioning wrote (``MLOPS_REGISTRY_CREDENTIALS``): the local counterpart of the pod's
    per-identity Secret. Without the file (a registry without auth), no credentials."""
    from airflow.sdk.log import mask_secret

    path = control_plane().registry_credentials
    if not path:
        return {}
    try:
        password = json.loads(Path(path).read_text())[user]
    except (OSError, ValueError, KeyError):
        raise AirflowFailException(  # configuration: a retry finds the same file
            f"the registry identity {user!r} is not in {path}: its pipeline was not granted "
            "(the embedded platform grants every DAG module's pipelines when it starts: restart "
            "it; in a cluster, run the registry provisioning job)"
        ) from None
    mask_secret(password)
    return {ENV_USERNAME: user, ENV_PASSWORD: password}


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
        crm_connection_id: str | None = None,
        registry_user: str | None = None,
        trial: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trial = trial  # a mapped trial task's trial (the tune/halve step's XCom entry)
        self.arguments = arguments
        # settings are data: STEP_CONFIG and STEP_MODEL are never rendered as Jinja (invocation.py)
        self.env_vars = literal_env(env_vars or {})
        self.skip_on_exit_code = skip_on_exit_code
        # publish only: the Airflow connection resolved into CRM_BASE_URL/CRM_API_TOKEN at execute
        self.crm_connection_id = crm_connection_id
        # the MLflow identity of this step's registry role (None: the step never calls MLflow)
        self.registry_user = registry_user
        self._process: subprocess.Popen[str] | None = None

    def resolved_command(self) -> list[str]:
        """``python``/``horovodrun`` in the contract's argv become the workload venv's programs;
        ``horovodrun`` runs as ``model_steps.horovod_launch`` (Horovod's launcher without its
        TensorFlow-importing build probe: 7-12 s less per multi-rank training)."""
        bin_dir = steps_venv() / "bin"
        python = str(bin_dir / "python")
        program = self.arguments[0]
        launcher = {"python": [python], "horovodrun": [python, "-m", HOROVOD_LAUNCHER]}
        if program in launcher and not Path(python).exists():
            raise AirflowFailException(
                f"{python} does not exist: the workload venv {steps_venv()} lacks 'python'. Run "
                "`make setup`, or point MLOPS_STEPS_VENV at a venv with images/steps and its "
                "extras installed."
            )
        command = [*launcher.get(program, [program]), *self.arguments[1:]]
        # horovodrun starts `python` itself: make that the venv's interpreter too.
        return [python if arg == "python" else arg for arg in command]

    def execute(self, context: Any) -> Any:
        with tempfile.TemporaryDirectory(prefix="step-xcom-") as tmp:
            xcom_path = Path(tmp) / "return.json"
            # lineage first: a worker whose environment sets it (a deployment) keeps its own
            env = lineage_env() | {
                k: v for k, v in os.environ.items() if k not in _CONTROL_PLANE_ONLY
            }
            env.update(resolved(self.env_vars))
            if self.trial is not None:
                env[ENV_TRIAL] = trial_value(self.trial)
            secrets: list[str] = []
            if self.crm_connection_id:
                crm = crm_env(self.crm_connection_id)
                env.update(crm)
                secrets.append(crm[ENV_CRM_API_TOKEN])
            if self.registry_user:
                registry = registry_env(self.registry_user)
                env.update(registry)
                secrets.extend(v for k, v in registry.items() if k == ENV_PASSWORD)
            env.update({ENV_XCOM_PATH: str(xcom_path), "PYTHONUNBUFFERED": "1"})
            bin_dir = str(steps_venv() / "bin")
            env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
            command = self.resolved_command()
            self.log.info("Running step command: %s", shlex.join(command))
            exit_code, tail = self._run(command, env, secrets)
            result = json.loads(xcom_path.read_text()) if xcom_path.exists() else None
        if exit_code == self.skip_on_exit_code:
            reason = (result or {}).get("reason", "the step asked to skip downstream")
            raise AirflowSkipException(f"step exited with {exit_code}: {reason}")
        if exit_code != 0:
            last = "\n".join(tail)
            if exit_code in NON_RETRYABLE_EXIT_CODES:
                raise AirflowFailException(
                    f"step exited with code {exit_code} ({NON_RETRYABLE_EXIT_CODES[exit_code]}): "
                    f"a retry cannot fix it, so the task fails now; last output:\n{last}"
                )
            raise AirflowException(f"step exited with code {exit_code}; last output:\n{last}")
        if result is None:
            raise AirflowException(
                f"step exited 0 but wrote no result to {ENV_XCOM_PATH}: the contract requires one"
            )
        return result

    def _run(
        self, command: list[str], env: dict[str, str], secrets: Sequence[str] = ()
    ) -> tuple[int, list[str]]:
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
                for secret in secrets:  # belt and braces: the task log masks them too
                    line = line.replace(secret, "***")
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
