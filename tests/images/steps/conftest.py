"""Shared fixtures of the workload data tests: one SparkSession per test session (local[2]) and one
generated raw zone that each test copies before changing it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

from datasteps_helpers import TENANT, TINY_DINERS

from mlmodels.restaurant_chain import datagen
from model_steps.spark_config import spark_conf


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    conf = spark_conf(
        {"data": {"spark": {"master": "local[2]", "shuffle_partitions": 4, "driver_memory": "1g"}}},
        "file:///tmp",
    )
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
