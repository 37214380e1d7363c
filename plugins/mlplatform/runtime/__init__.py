"""Runtimes: where a step's command runs. :func:`current_runtime` is the one place that decides."""

from __future__ import annotations

import os
from typing import Literal, cast

Runtime = Literal["local", "kubernetes"]
RUNTIMES: tuple[Runtime, ...] = ("local", "kubernetes")
RUNTIME_ENV = "MLOPS_RUNTIME"


def current_runtime() -> Runtime:
    """``MLOPS_RUNTIME`` (set on the scheduler, DAG processor and workers), ``local`` by default.

    An environment variable rather than an Airflow Variable: it is read at every parse of every DAG
    file, and a metadata-database read there would slow the DAG processor for hundreds of DAGs.
    """
    value = os.environ.get(RUNTIME_ENV, "local").strip().lower()
    if value not in RUNTIMES:
        raise ValueError(
            f"{RUNTIME_ENV}={value!r} is not a runtime; use one of {', '.join(RUNTIMES)}"
        )
    return cast(Runtime, value)
