"""Shared fixtures of the workload data tests: one SparkSession per test session (local[2]) and one
generated raw zone that each test copies before changing it."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyspark")

from datasteps_helpers import TENANT, TINY_DINERS, run_chain

from mlmodels.restaurant_chain import datagen
from model_steps.testing import local_spark

# Triton (PyTorch's GPU kernel compiler, which bundles LLVM) aborts the interpreter at exit
# ("free(): invalid pointer") in a process that has also loaded Horovod's TensorFlow library, which
# this session's modules import (test_train): torch imports it lazily at a module's first optimizer
# step. A step process never holds both (a PyTorch model's steps do not import Horovod); the
# tests' CPU torch needs no Triton, so it is not importable here (docs/registry-access.md).
sys.modules.setdefault("triton", None)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def spark():
    """The test kit's local SparkSession (model_steps.testing), with Arrow for toPandas."""
    session = local_spark()
    session.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    yield session
    session.stop()


# what the session JVM's exit code says (pyspark's Popen: a signal is negative)
JVM_EXITS = {0: "its stdin closed (the Python side let the gateway go)",
             52: "Spark's exit on an OutOfMemoryError in a task (SparkExitCode.OOM)",
             -9: "killed (SIGKILL: the kernel's OOM killer?)",
             134: "crashed (look for hs_err_pid*.log in the working directory)"}  # fmt: skip


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that fails because this worker's shared Spark JVM has gone says so, with the JVM's
    exit code: otherwise every later Spark test fails with a bare py4j "Connection refused"."""
    report = yield
    context = getattr(sys.modules.get("pyspark"), "SparkContext", None)
    proc = getattr(getattr(context, "_gateway", None), "proc", None)
    if report.failed and proc is not None and proc.poll() is not None:
        meaning = JVM_EXITS.get(proc.returncode, "see the JVM's stderr above")
        report.sections.append(("the session's Spark JVM", f"exited with code {proc.returncode}:"
                                f" {meaning}"))  # fmt: skip
    return report


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
    # these tests drive the steps directly, as the registry's admin; the per-role identities are
    # exercised through the runtimes (two_models, make run) and tests/embedded/test_registry_access
    info["env"] = {**info["env"], **services.admin_env(state)}
    os.environ.update(services.admin_env(state))  # the tests' own MLflow clients in this process
    try:
        yield info
    finally:
        services.down(state)


@pytest.fixture(scope="session")
def small_features_lake(tmp_path_factory, spark) -> Path:
    """A raw zone of 4,000 diners (datagen "small", seed 7) and the ingest step's committed tables
    for datasteps_helpers.RUN_ID, made once per session (one Spark ingest): the training, gate and
    tuning tests each start from a private copy (``features_lake``)."""
    root = tmp_path_factory.mktemp("small") / "lake"
    datagen.write_raw(datagen.generate(datagen.SIZES["small"], seed=7), f"file://{root}", TENANT)
    [res] = run_chain(root, tmp_path_factory.mktemp("ingest"), steps=("ingest",))
    assert res["rc"] == 0, res
    return root
