"""Render every step of every DAG as the Kubernetes objects the cluster would receive.

Uses the operators' own code (``render_template_fields`` then ``build_pod_request_obj(dry_run=True)``)
so what is checked is what would be sent. Used by the tests, the Helm/checkov checks, and people
reviewing a change: ``python -m mlplatform.render --dags-folder dags --out /tmp/rendered``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator
from kubernetes.client import ApiClient

SAMPLE_RUN_ID = "scheduled__2026-03-01T05:00:00+00:00"
SAMPLE_RUN_AFTER = dt.datetime(2026, 3, 1, 5, tzinfo=dt.UTC)


def render_context(task: BaseOperator, run_id: str = SAMPLE_RUN_ID) -> dict[str, Any]:
    """The parts of a task-instance context that templates and pod labels read (a scheduled run's:
    its data interval ends when it is due)."""
    from airflow.sdk.execution_time import macros

    dag = task.dag
    ti = types.SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, run_id=run_id,
                               map_index=-1, try_number=1)  # fmt: skip
    return {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "run_id": run_id,
        "params": dag.params.dump(),
        "dag_run": types.SimpleNamespace(run_id=run_id, run_after=SAMPLE_RUN_AFTER),
        "ds": SAMPLE_RUN_AFTER.date().isoformat(),
        "data_interval_end": SAMPLE_RUN_AFTER,
        "macros": macros,
    }


def render_task(task: BaseOperator) -> dict[str, Any] | None:
    """The Kubernetes object one task creates: a Pod, or an MPIJob for multi-node training; None
    for the control plane's own small tasks (request_retrain), which run in the Airflow worker's
    pod (the official chart's pod template) and create nothing of their own."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from mlplatform.runtime.mpijob import MPIJobOperator
    from mlplatform.tuning import unmapped_sample

    if isinstance(task, PythonOperator):
        return None
    if isinstance(task, MappedOperator):  # a tuning trial: the pod one of its trials gets
        task = unmapped_sample(task)
    context = render_context(task)
    task.render_template_fields(context)
    if isinstance(task, KubernetesPodOperator):
        pod = task.build_pod_request_obj(context, dry_run=True)
        return dict(ApiClient().sanitize_for_serialization(pod))
    if isinstance(task, MPIJobOperator):
        return task.job_body(context)
    raise TypeError(f"{task.dag_id}.{task.task_id} is a {type(task).__name__}, not a cluster task")


def iter_rendered(dags_folder: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(dag_id, task_id, object) for every task of every DAG in the folder, via Airflow's DagBag."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder))
    if bag.import_errors:
        problems = "\n".join(f"{f}: {e}" for f, e in bag.import_errors.items())
        raise SystemExit(f"DAG import errors:\n{problems}")
    for dag_id in sorted(bag.dags):
        for task in bag.dags[dag_id].tasks:
            if (obj := render_task(task)) is not None:
                yield dag_id, task.task_id, obj


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dags-folder", type=Path, default=Path("dags"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLOPS_RUNTIME", "kubernetes")
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    for dag_id, task_id, obj in iter_rendered(args.dags_folder):
        path = args.out / f"{dag_id}.{task_id}.{obj['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        count += 1
    print(f"rendered {count} objects into {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
