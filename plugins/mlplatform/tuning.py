"""The tuning stage of a DAG (settings ``tuning.enabled``), between validate and train::

    tune -> trial (mapped, one task per trial) [-> halve -> trial_final (mapped)] -> select -> train

The control plane never imports the model, so it cannot sample its search space: the ``tune`` step
(workload) plans the trials and returns them as its XCom, ``{trial name: trial}``, and the trial
task is Airflow dynamic task mapping over it (``.partial(...).expand(trial=tune.output)``): each
trial is a pod of the train step's resource profile (or a local process with its Horovod ranks),
at most ``tuning.parallel_trials`` at once per run (``max_active_tis_per_dagrun``), which also
bounds what a run's trials take of the namespace quota. ``halve`` and ``select`` run whatever their
trials did (``trigger_rule=all_done``): a failed trial is counted, not fatal, while
``tuning.min_successful_trials`` finish; the DAG run's state follows its leaves, so it succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseOperator

from mlplatform.invocation import StepInvocation
from mlplatform.profiles import ResourceProfile
from mlplatform.runtime import Runtime
from mlplatform.runtime.tasks import build_task, task_spec
from mlplatform.spec import ResolvedCustomer
from mlplatform_contract.steps import StepKind

# tune, halve and select only read and write small JSON and talk to MLflow: no GPU, no train pod
_LIGHT = {"cpu": "1", "memory": "2Gi", "gpu": 0, "shm_size": None, "node_pool": "cpu",
          "nodes": 1, "local_processes": 1, "timeout_minutes": 30, "startup_timeout_seconds": 300,
          "priority_class": "ml-pipeline-standard"}  # fmt: skip


@dataclass(frozen=True)
class TuningInvocation(StepInvocation):
    """A tuning step: the train kind (its image, service account and lineage), with the train
    profile for trials (one pod each: a multi-node profile's trial takes one node) and a small
    CPU profile for the others."""

    @property
    def kind(self) -> StepKind:
        return "train"

    @property
    def profile(self) -> ResourceProfile:
        train = self.customer.profiles["train"]
        update = {"nodes": 1} if self.step == "trial" else _LIGHT
        return ResourceProfile.model_validate({**train.model_dump(), **update})


def build_tuning_stage(customer: ResolvedCustomer, runtime: Runtime) -> tuple[Any, Any]:
    """The stage's tasks in the current DAG; returns (first, last) for the factory to chain."""
    tuning = customer.settings.tuning
    tune = build_task(TuningInvocation(customer, "tune"), runtime)
    trials = _mapped_trials(customer, runtime, "trial", tune)
    if len(tuning.rung_epochs(customer.settings.training.epochs)) > 1:
        halve = build_task(TuningInvocation(customer, "halve"), runtime, trigger_rule="all_done")
        trials >> halve
        trials = _mapped_trials(customer, runtime, "trial_final", halve)
    select = build_task(TuningInvocation(customer, "select"), runtime, trigger_rule="all_done")
    trials >> select
    return tune, select


def _mapped_trials(
    customer: ResolvedCustomer, runtime: Runtime, task_id: str, source: BaseOperator
) -> Any:
    """One trial task per entry of ``source``'s XCom (``trial=(name, trial)``)."""
    tuning = customer.settings.tuning
    operator, kwargs = task_spec(TuningInvocation(customer, "trial"), runtime)
    kwargs |= {
        "task_id": task_id,
        "max_active_tis_per_dagrun": min(tuning.parallel_trials, tuning.trials),
    }
    mapped = operator.partial(**kwargs).expand(trial=source.output)
    source >> mapped
    return mapped


SAMPLE_TRIAL = ("trial-00", {"name": "trial-00", "index": 0, "rung": 0, "params": {}})


def unmapped_sample(task: Any) -> BaseOperator:
    """A mapped trial task as one of its trials would run (for rendering and checking the pod)."""
    return task.unmap({"trial": SAMPLE_TRIAL})
