"""The one description of how a step is invoked, shared by both runtimes.

Both the pod and the local process get exactly this argv (``python`` resolved to the workload venv
locally) and these variables; only where they run differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.sdk import literal

from mlplatform.profiles import ResourceProfile
from mlplatform.spec import ResolvedCustomer
from mlplatform_contract.steps import ENV_CONFIG, ENV_MODEL, ENV_PARAMS, WORKLOAD_MODULE, StepKind

PARAMS_TEMPLATE = "{{ params | tojson }}"
# Customer settings and the model's identity are data, never Jinja: both runtimes hand these
# variables to their operators' templated env wrapped in literal(), so a setting that reads
# "{{ conn.crm_default.password }}" reaches the step as written (never the connection's password) and
# a "{{" in a text setting cannot break a run. STEP_PARAMS stays a template (the run's params).
LITERAL_VARS: tuple[str, ...] = (ENV_CONFIG, ENV_MODEL)
# Every step, in both runtimes: MLflow may never unpickle anything (a registered model is data:
# model_steps.model_store; MLflow 3 defaults this to true).
SAFE_MLFLOW_ENV = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}


def literal_env(env: dict[str, str]) -> dict[str, Any]:
    """``env`` for an operator's templated field: the data variables wrapped in literal()."""
    return {k: literal(v) if k in LITERAL_VARS else v for k, v in env.items()}


def data_date_template(landing_delay_days: int) -> str:
    """A run's data date (its as-of date): the operator's choice in the trigger form, else the last
    day whose drops have landed when the run is due (the end of its data interval, or when it was
    triggered, minus the landing delay)."""
    due = "(data_interval_end or dag_run.run_after) | ds"
    return f"{{{{ params.data_date or macros.ds_add({due}, -{landing_delay_days}) }}}}"


@dataclass(frozen=True)
class StepInvocation:
    customer: ResolvedCustomer
    step: str  # the task id and the CLI's step name: a platform step or a model's extra step

    @property
    def kind(self) -> StepKind:
        """The platform step whose image, service account and defaults this step uses."""
        return self.customer.kind_of(self.step)

    @property
    def profile(self) -> ResourceProfile:
        return self.customer.profiles[self.step]

    @property
    def pipeline(self) -> str:
        return self.customer.pipeline.name

    def argv(
        self, horovod_processes: int = 1, *, gloo: bool = False, hostfile: str | None = None
    ) -> list[str]:
        """The command line; with several processes, wrapped in ``horovodrun -np N``.

        Ranks run on this host (``-H localhost:N``) unless a hostfile lists the nodes (MPIJob).
        """
        command = [
            "python", "-m", WORKLOAD_MODULE, self.step,
            "--pipeline", self.pipeline,
            "--customer", self.customer.id,
            "--run-id", "{{ run_id }}",
            "--data-date", data_date_template(self.customer.settings.data.landing_delay_days),
        ]  # fmt: skip
        if horovod_processes <= 1:
            return command
        hosts = ["--hostfile", hostfile] if hostfile else ["-H", f"localhost:{horovod_processes}"]
        launcher = ["horovodrun", "-np", str(horovod_processes), *hosts]
        return launcher + (["--gloo"] if gloo else []) + command

    @cached_property
    def env(self) -> dict[str, str]:
        """Step-specific variables; platform-wide ones (lake, MLflow…) come from the runtime."""
        spec = self.customer.pipeline
        model = {"ref": spec.model, "task": spec.task, "source": self.customer.source}
        return {
            ENV_CONFIG: json.dumps(self.customer.settings.step_config(), sort_keys=True),
            ENV_MODEL: json.dumps(model, sort_keys=True),
            ENV_PARAMS: PARAMS_TEMPLATE,
            **SAFE_MLFLOW_ENV,
        }

    @property
    def labels(self) -> dict[str, str]:
        """Cost-allocation labels, also used to find a run's pods with kubectl."""
        return {
            "app.kubernetes.io/part-of": "mlops-platform",
            "mlops.io/pipeline": self.pipeline,
            "mlops.io/customer": self.customer.id,
            "mlops.io/step": self.step,
            "mlops.io/kind": self.kind,  # the platform step whose image and account it uses
            "mlops.io/team": self.customer.pipeline.owner,
        }
