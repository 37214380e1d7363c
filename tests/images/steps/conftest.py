"""Shared fixtures of the workload data tests: one SparkSession per test session (local[2]) and one
generated raw zone that each test copies before changing it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyspark")

from model_steps import cli, datagen  # noqa: E402
from model_steps.spark_config import spark_conf  # noqa: E402

TENANT = "acme-foods"
PIPELINE = "customer_propensity"
RUN_ID = "manual__2026-06-29T00:00:00+00:00"
DATA_DATE = datagen.DEFAULT_CUTOFF
TINY_DINERS = 600


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    conf = spark_conf({"data": {"spark": {"master": "local[2]", "shuffle_partitions": 4,
                                          "driver_memory": "1g"}}}, "file:///tmp")
    builder = SparkSession.builder
    for k, v in conf.items():
        builder = builder.config(k, v)
    session = builder.getOrCreate()
    session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_tables():
    return datagen.generate(TINY_DINERS, seed=11)


@pytest.fixture(scope="session")
def pristine_lake(tmp_path_factory, tiny_tables) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "lake"
    datagen.write_raw(tiny_tables, f"file://{root}", TENANT)
    return root


@pytest.fixture()
def lake(tmp_path, pristine_lake) -> Path:
    """A private copy of the pristine raw zone."""
    root = tmp_path / "lake"
    shutil.copytree(pristine_lake, root)
    return root


def raw_checksums(lake_root: Path) -> dict[str, str]:
    raw = lake_root / "raw"
    return {str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(raw.rglob("*")) if p.is_file()}


def run_chain(lake_root: Path, tmp: Path, steps=("ingest", "validate"), config: dict | None = None,
              caplog: Any = None, data_date: dt.date = DATA_DATE) -> list[dict[str, Any]]:
    """Run steps in order through the CLI entry point in this process (the shared SparkSession is
    reused), stopping at the first that does not exit 0, like the DAG's dependencies."""
    results = []
    env = {"LAKE_URI": f"file://{lake_root}", "STEP_CONFIG": json.dumps(config or {})}
    for step in steps:
        xcom = tmp / f"xcom-{step}.json"
        old = {k: os.environ.get(k) for k in (*env, "STEP_XCOM_PATH")}
        os.environ.update(env, STEP_XCOM_PATH=str(xcom))
        if caplog is not None:
            caplog.clear()
        try:
            with (caplog.at_level(logging.INFO) if caplog is not None else _null()):
                rc = cli.main([step, "--pipeline", PIPELINE, "--customer", TENANT, "--run-id", RUN_ID,
                               "--data-date", data_date.isoformat()])
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] if caplog else []
        results.append({"step": step, "rc": rc,
                        "xcom": json.loads(xcom.read_text()) if xcom.exists() else None,
                        "error": "\n".join(errors)})
        if rc != 0:
            break
    return results


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.fixture(scope="session")
def mlflow_services(tmp_path_factory):
    """The embedded services (moto S3 endpoint + MLflow server, sqlite backend) for the whole test
    session, started and stopped through the same module `make run` uses."""
    from embedded import services

    state = tmp_path_factory.mktemp("services")
    info = services.up(state, timeout=120)
    try:
        yield info
    finally:
        services.down(state)
