"""Runtimes: where a step's command runs. :func:`current_runtime` is the one place that decides."""

from __future__ import annotations

from typing import Literal, cast

from mlplatform_contract.environment import control_plane

Runtime = Literal["local", "kubernetes"]


def current_runtime() -> Runtime:
    """``MLOPS_RUNTIME`` (set on the scheduler, DAG processor and workers), ``local`` by default
    (mlplatform_contract.environment validates it).

    An environment variable rather than an Airflow Variable: it is read at every parse of every DAG
    file, and a metadata-database read there would slow the DAG processor for hundreds of DAGs.
    """
    return cast(Runtime, control_plane().runtime)
