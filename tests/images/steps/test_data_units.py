"""Small unit tests of the data steps' pieces: Spark configuration, suite file, profiles, datagen."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmodels.customer_propensity import MODEL
from mlmodels.customer_propensity.features import build_features_pandas
from mlmodels.restaurant_chain import datagen
from mlplatform_contract.settings import step_settings
from model_steps.contract import UsageError
from model_steps.expectations import load_suite
from model_steps.model_loader import ENTRY_POINT_GROUP
from model_steps.profile import build_profile, drift, psi
from model_steps.spark_config import (
    CLASS_ARCHIVE,
    QUICK_JIT_OPTIONS,
    quick_driver_options,
    spark_conf,
)

FEATURE_SCHEMA = MODEL.table_schema(labelled=True)


def installed_models():
    from importlib.metadata import entry_points

    return [ep.load() for ep in entry_points(group=ENTRY_POINT_GROUP)]


def test_local_spark_conf_is_local_and_small():
    conf = spark_conf({}, "file:///tmp/lake", env={})
    assert conf["spark.master"] == "local[2]"
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert not any(k.startswith("spark.hadoop.fs.s3a") for k in conf)
    # a short local run's JVM: C1 only and the serial GC, unless the settings ask for the full JIT
    options = conf["spark.driver.extraJavaOptions"]
    assert options.startswith("-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
    full = spark_conf({"data": {"spark": {"driver_jit": "full"}}}, "file:///tmp/lake", env={})
    assert "spark.driver.extraJavaOptions" not in full
    with pytest.raises(Exception, match="driver_jit"):
        step_settings({"data": {"spark": {"driver_jit": "fast"}}})
    off = {"data": {"spark": {"driver_class_archive": False}}}
    assert spark_conf(off, "file:///tmp/lake", env={})["spark.driver.extraJavaOptions"] == (
        QUICK_JIT_OPTIONS
    )


def test_the_class_archive_is_mapped_only_where_it_exists(tmp_path: Path) -> None:
    archive = tmp_path / "spark-classes.jsa"
    assert quick_driver_options(archive) == QUICK_JIT_OPTIONS  # none written: the JVM's own CDS
    assert quick_driver_options(None) == QUICK_JIT_OPTIONS
    archive.write_bytes(b"")
    options = quick_driver_options(archive).split()
    assert options[:2] == QUICK_JIT_OPTIONS.split()
    assert f"-XX:SharedArchiveFile={archive}" in options
    assert "-Xshare:auto" in options  # an unusable archive (new JDK, other jars) is skipped


def test_the_local_session_jvm_runs_with_the_quick_jit(spark):
    """The option reaches the driver JVM pyspark launches (client mode reads it at launch)."""
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    arguments = list(runtime.getInputArguments())
    assert "-XX:TieredStopAtLevel=1" in arguments and "-XX:+UseSerialGC" in arguments
    # make setup wrote the class archive into the workload venv, and the session's JVM maps it
    assert CLASS_ARCHIVE.is_file(), f"make setup wrote no class archive at {CLASS_ARCHIVE}"
    assert f"-XX:SharedArchiveFile={CLASS_ARCHIVE}" in arguments


def test_production_s3a_conf_uses_web_identity_and_a_committer():
    conf = spark_conf(
        {"data": {"spark": {"driver_memory": "6g"}}},
        "s3://acme-lake/prod",
        env={"AWS_REGION": "eu-west-1"},
    )
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith(
        "WebIdentityTokenFileCredentialsProvider"
    )
    assert conf["spark.hadoop.fs.s3a.committer.name"] == "magic"
    assert conf["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert conf["spark.driver.memory"] == "6g"
    assert not any("secret" in k.lower() or "access.key" in k.lower() for k in conf)


K8S_ENV = {
    "MLOPS_SPARK_MASTER": "k8s://https://kubernetes.default.svc",
    "SPARK_EXECUTOR_IMAGE": "registry/mlops/ingest@sha256:" + "a" * 64,
    "SPARK_EXECUTOR_NAMESPACE": "ml-spark",
    "SPARK_EXECUTOR_SERVICE_ACCOUNT": "spark-executor",
    "SPARK_DRIVER_NAMESPACE": "ml-steps",
    "HOSTNAME": "ingest-pod",
    "POD_IP": "10.0.0.5",
}


def test_spark_on_kubernetes_conf():
    cfg = {
        "data": {"spark": {"executors": 8, "executor_memory": "12g", "shuffle_partitions": None}}
    }
    conf = spark_conf(cfg, "s3a://acme-lake/prod", env=K8S_ENV)
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc"
    assert conf["spark.kubernetes.container.image"] == K8S_ENV["SPARK_EXECUTOR_IMAGE"]
    assert conf["spark.kubernetes.namespace"] == "ml-spark"
    assert conf["spark.kubernetes.executor.serviceAccountName"] == "spark-executor"
    # the driver pod is in another namespace: Spark could not find it there, so no owner reference
    assert "spark.kubernetes.driver.pod.name" not in conf
    same = spark_conf(
        cfg, "s3a://acme-lake/prod", env={**K8S_ENV, "SPARK_DRIVER_NAMESPACE": "ml-spark"}
    )
    assert same["spark.kubernetes.driver.pod.name"] == "ingest-pod"
    assert conf["spark.driver.host"] == "10.0.0.5"
    assert conf["spark.executor.memory"] == "12g"
    assert conf["spark.dynamicAllocation.maxExecutors"] == "8"
    assert conf["spark.sql.shuffle.partitions"] == "200"
    assert conf["spark.kubernetes.executor.label.mlops.io/step"] == "ingest"
    assert conf["spark.kubernetes.executor.podTemplateFile"].endswith("executor-pod-template.yaml")
    assert "spark.driver.extraJavaOptions" not in conf  # a long-lived driver keeps the full JIT


def test_executors_need_the_kubernetes_runtime_and_a_digest():
    cfg = {"data": {"spark": {"executors": 8}}}
    assert spark_conf(cfg, "file:///tmp/lake", env={})["spark.master"] == "local[2]"
    unpinned = {**K8S_ENV, "SPARK_EXECUTOR_IMAGE": "registry/mlops/ingest:latest"}
    with pytest.raises(UsageError, match="SPARK_EXECUTOR_IMAGE pinned by digest"):
        spark_conf(cfg, "s3a://acme-lake/prod", env=unpinned)


def test_settings_defaults_and_checks():
    """The workload parses STEP_CONFIG with the control plane's own schema (one definition)."""
    assert step_settings({}).data.lookback_days == 365
    v = step_settings({"validation": {"min_rows": 5}}).validation
    assert v.min_rows == 5 and v.drift_psi_fail == 0.25
    with pytest.raises(Exception, match="label_rate_min must not exceed label_rate_max"):
        step_settings({"validation": {"label_rate_min": 0.7}})


@pytest.mark.parametrize("model", installed_models(), ids=lambda m: m.name)
def test_every_models_suite_covers_its_columns_with_a_severity_each(model):
    from great_expectations.core.expectation_suite import ExpectationSuite

    _name, suite = load_suite(model)
    exists = {
        e["kwargs"]["column"]
        for e in suite["expectations"]
        if e["type"] == "expect_column_to_exist"
    }
    assert exists == set(model.table_schema(labelled=True))
    assert {e["severity"] for e in suite["expectations"]} <= {"critical", "warning", "info"}
    assert all(e.get("meta", {}).get("why") for e in suite["expectations"])
    assert len(ExpectationSuite(**suite).expectations) == len(suite["expectations"])


def test_psi_and_profile():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame(
        {"monetary_lookback": rng.gamma(2, 50, 5000), "segment": "family", "label": 0}
    )
    same = pd.DataFrame(
        {"monetary_lookback": rng.gamma(2, 50, 5000), "segment": "family", "label": 0}
    )
    shifted = same.assign(monetary_lookback=same.monetary_lookback * 3)
    prof = json.loads(json.dumps(build_profile(ref, MODEL)))  # survives a JSON round trip
    assert drift(prof, same)["monetary_lookback"] < 0.05
    assert drift(prof, shifted)["monetary_lookback"] > 0.25
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_datagen_is_deterministic_by_seed(tmp_path):
    def digest(seed):
        root = tmp_path / f"lake{seed}-{len(list(tmp_path.iterdir()))}"
        datagen.write_raw(datagen.generate(300, seed=seed), f"file://{root}", "acme-foods")
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(root)).encode() + p.read_bytes())
        return h.hexdigest()

    assert digest(3) == digest(3)
    assert digest(3) != digest(4)


def test_datagen_has_a_learnable_signal():
    """A plain logistic regression on the features beats chance by a clear margin (AUC)."""
    from scipy.optimize import minimize
    from scipy.stats import rankdata

    t = datagen.generate(6000, seed=5)
    d, o, e = (t[k].drop(columns="dt") for k in ("diners", "orders", "email_events"))
    f = build_features_pandas(d, o, e, datagen.DEFAULT_CUTOFF)
    cols = [c for c, k in FEATURE_SCHEMA.items() if k in ("int", "double") and c != "label"]
    x = f[cols].to_numpy(float)
    x = np.c_[np.ones(len(x)), (x - x.mean(0)) / (x.std(0) + 1e-9)]
    y = f["label"].to_numpy(float)
    train = np.random.default_rng(0).random(len(y)) < 0.6

    def nll(w):
        z = x[train] @ w
        return np.sum(np.logaddexp(0, z) - y[train] * z) + 0.5 * w @ w

    w = minimize(nll, np.zeros(x.shape[1]), method="L-BFGS-B").x
    s, yt = x[~train] @ w, y[~train]
    r = rankdata(s)
    auc = (r[yt == 1].sum() - yt.sum() * (yt.sum() + 1) / 2) / (yt.sum() * (len(yt) - yt.sum()))
    assert 0.02 < y.mean() < 0.2
    assert auc > 0.68, auc
