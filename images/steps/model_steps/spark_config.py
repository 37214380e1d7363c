"""Spark configuration for the ingest step: local on the embedded default, s3a + IRSA and optionally
Spark-on-Kubernetes executors in production.

Derived from ``STEP_CONFIG["data"]["spark"]`` (``mlplatform_contract.settings.SparkSettings``, the
one definition both sides read), the lake URI and the environment the runtime gives the pod:

=========================  ==================================================================
key                        meaning (default)
=========================  ==================================================================
executors                  max executor pods (0: ``local[2]`` in the step's own pod)
executor_cores             cores per executor (2)
executor_memory            heap per executor (``6g``); overhead adds 20%
driver_memory              JVM heap of the driver (``2g``); in local mode also the executors' heap
shuffle_partitions         ``spark.sql.shuffle.partitions`` (8 local, 200 on Kubernetes)
driver_jit                 local masters only: ``quick`` (C1 JIT, serial GC) or ``full`` (``quick``)
driver_class_archive       with ``quick``: map ``CLASS_ARCHIVE`` when ``make setup`` wrote it (true)
master                     workload-only override for tests and benchmarks (``local[N]``)
extra_conf                 workload-only free-form ``{spark.key: value}`` applied last
=========================  ==================================================================

Executors run only when the kubernetes runtime asks for them: with ``executors > 0`` it sets
``MLOPS_SPARK_MASTER`` (the in-cluster API server), ``SPARK_EXECUTOR_IMAGE`` (the ingest image by
digest), ``SPARK_EXECUTOR_NAMESPACE``, ``SPARK_EXECUTOR_SERVICE_ACCOUNT`` (``step-ingest``, its IRSA
role) and ``POD_IP``; the executors' pod template (security context, node pool) is the platform
chart's ConfigMap ``spark-executor-pod-template``, mounted at ``EXECUTOR_POD_TEMPLATE``. The local
runtime sets none of these, so the same settings run ``local[N]`` there.

s3a cannot run here (hadoop-aws jars cannot be fetched); the production image carries
``hadoop-aws`` and ``spark-hadoop-cloud`` matching Spark 4's Hadoop 3.4 (AWS SDK v2), and the
configuration below is rendered and tested as data. ``python -m model_steps.spark_config`` prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from mlplatform_contract.environment import StepEnvironment
from mlplatform_contract.settings import SparkSettings
from model_steps import startup
from model_steps.contract import UsageError

# data.spark's defaults: the one settings schema's (tests and benchmarks may add master/extra_conf)
SPARK_DEFAULTS: dict[str, Any] = SparkSettings().model_dump()

# A short local run (the embedded default, a test, a small customer's pod) spends much of its time
# compiling: C2 compiler threads compete with the two task threads for the cores and rarely pay back
# before the JVM exits. C1 only with the serial GC ran the tiny example ingest in 59-71 s against
# 154-167 s with the JVM's defaults, on this project's loaded 2-core machine (docs/data-steps.md).
QUICK_JIT_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"

# The classes a local Spark driver loads, parsed and verified once into a JVM class-data-sharing
# archive (AppCDS) by ``make setup`` (``python -m model_steps.spark_config --write-class-archive``):
# a quick driver then maps them instead of loading ~10k classes from the jars. Measured on this
# project's 2-core machine: session start 7.0-8.3 s -> 4.1-4.6 s, the first job 3.9-4.2 s ->
# 1.6-2.0 s. The JVM checks the archive against its own version and classpath and, unusable (a
# new JDK, extra jars), runs without it; its own CDS logging stays off so that case is silent.
CLASS_ARCHIVE = Path(sys.prefix) / "share" / "mlops-platform" / "spark-classes.jsa"
_ARCHIVE_QUIET = "-Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"

EXECUTOR_POD_TEMPLATE = "/etc/mlops/spark/executor-pod-template.yaml"
DRIVER_PORT, BLOCK_MANAGER_PORT = 7078, 7079

S3A_CONF: dict[str, str] = {
    # IRSA: the pod's projected web-identity token (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN env,
    # injected by the EKS pod identity webhook) is exchanged for role credentials; no static keys.
    "spark.hadoop.fs.s3a.aws.credentials.provider": (
        "software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider"
    ),
    "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    "spark.hadoop.fs.s3a.fast.upload": "true",
    "spark.hadoop.fs.s3a.connection.maximum": "200",
    "spark.hadoop.fs.s3a.threads.max": "64",
    "spark.hadoop.fs.s3a.experimental.input.fadvise": "random",
    # S3 has no atomic rename: write through the magic committer (spark-hadoop-cloud)
    "spark.hadoop.fs.s3a.committer.name": "magic",
    "spark.hadoop.fs.s3a.committer.magic.enabled": "true",
    "spark.sql.sources.commitProtocolClass": (
        "org.apache.spark.internal.io.cloud.PathOutputCommitProtocol"
    ),
    "spark.sql.parquet.output.committer.class": (
        "org.apache.spark.internal.io.cloud.BindingParquetOutputCommitter"
    ),
}


def spark_conf(
    config: dict[str, Any] | None, lake_uri: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    """The full ``{key: value}`` Spark configuration for this step invocation."""
    settings = StepEnvironment.of(env)
    given = dict(((config or {}).get("data") or {}).get("spark") or {})
    sc = {**SPARK_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    master = settings.spark_master or str(given.get("master", "local[2]"))
    on_k8s = master.startswith("k8s://")
    conf: dict[str, str] = {
        "spark.master": master,
        "spark.app.name": "model-steps-ingest",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.shuffle.partitions": str(sc.get("shuffle_partitions") or (200 if on_k8s else 8)),
        "spark.driver.memory": str(sc.get("driver_memory", "2g")),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.compression.codec": "snappy",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    if not on_k8s:
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf["spark.driver.host"] = "127.0.0.1"
        if sc["driver_jit"] == "quick":  # the default: SparkSettings, the one definition
            archive = CLASS_ARCHIVE if sc["driver_class_archive"] else None
            conf["spark.driver.extraJavaOptions"] = quick_driver_options(archive)
        # the raw zone is ~1 file per table and day: list them in the driver instead of starting a
        # distributed listing job per table (halves a small ingest on a local disk)
        conf["spark.sql.sources.parallelPartitionDiscovery.threshold"] = "100000"
    if lake_uri.startswith(("s3://", "s3a://")):
        conf.update(S3A_CONF)
        if settings.aws_region:
            conf["spark.hadoop.fs.s3a.endpoint.region"] = settings.aws_region
        if settings.s3_endpoint_url:  # e.g. a local S3 stand-in
            conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3_endpoint_url
            conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    if on_k8s:
        conf.update(_executor_conf(sc, settings))
    for k, v in dict(sc.get("extra_conf") or {}).items():
        conf[str(k)] = str(v)
    return conf


def quick_driver_options(archive: Path | None = CLASS_ARCHIVE) -> str:
    """The quick JIT, plus the class archive where ``make setup`` wrote one."""
    if archive is None or not archive.is_file():
        return QUICK_JIT_OPTIONS
    return f"{QUICK_JIT_OPTIONS} -XX:SharedArchiveFile={archive} {_ARCHIVE_QUIET}"


def _executor_conf(sc: dict[str, Any], env: StepEnvironment) -> dict[str, str]:
    """Client mode: this step's pod is the driver; executors are pods it creates beside it."""
    image = env.spark_executor_image or None
    if not image or "@sha256:" not in image:
        raise UsageError(
            f"Spark executors need SPARK_EXECUTOR_IMAGE pinned by digest (got {image!r}); the "
            "kubernetes runtime sets it to the ingest image when data.spark.executors > 0"
        )
    account = env.spark_executor_service_account
    executors = str(sc.get("executors") or sc.get("executor_instances") or 1)
    namespace = env.spark_executor_namespace
    # Executors are owned by the driver pod (they go when the step's pod goes) only when they share
    # its namespace: Spark looks the driver pod up in the executors' namespace. In their own
    # namespace they exit when the driver stops answering, and Spark deletes them on stop.
    same_namespace = namespace == (env.spark_driver_namespace or namespace)
    owner = {"spark.kubernetes.driver.pod.name": env.hostname} if same_namespace else {}
    return {
        **owner,
        "spark.submit.deployMode": "client",
        "spark.kubernetes.namespace": namespace,
        "spark.kubernetes.container.image": image,
        "spark.kubernetes.container.image.pullPolicy": "IfNotPresent",
        "spark.kubernetes.authenticate.driver.serviceAccountName": account,
        "spark.kubernetes.executor.serviceAccountName": account,
        "spark.driver.host": env.pod_ip,
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.driver.port": str(DRIVER_PORT),
        "spark.driver.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.blockManager.port": str(BLOCK_MANAGER_PORT),
        "spark.executor.instances": executors,
        "spark.executor.cores": str(sc["executor_cores"]),
        "spark.executor.memory": str(sc["executor_memory"]),
        "spark.executor.memoryOverheadFactor": "0.2",
        "spark.kubernetes.executor.request.cores": str(sc["executor_cores"]),
        "spark.kubernetes.executor.limit.cores": str(sc["executor_cores"]),
        # the labels the platform's NetworkPolicy admits driver <-> executor traffic by
        "spark.kubernetes.executor.label.app.kubernetes.io/part-of": "mlops-platform",
        "spark.kubernetes.executor.label.mlops.io/step": "ingest",
        "spark.kubernetes.executor.label.mlops.io/spark-role": "executor",
        "spark.kubernetes.executor.deleteOnTermination": "true",
        "spark.kubernetes.executor.podTemplateFile": EXECUTOR_POD_TEMPLATE,
        # executors scale with the data; shuffle tracking replaces the external shuffle service
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": "1",
        "spark.dynamicAllocation.maxExecutors": executors,
    }


def get_session(conf: dict[str, str]):  # type: ignore[no-untyped-def]
    """A SparkSession with ``conf`` (reuses the active one, e.g. the test session)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder
    for k, v in conf.items():
        builder = builder.config(k, v)
    with startup.paying("spark session"):  # the JVM: start-up, not the step's work
        return builder.getOrCreate()


def write_class_archive(archive: Path = CLASS_ARCHIVE) -> Path:
    """Run the kinds of work the steps' local drivers do (JSON and CSV reads, aggregations, a
    window, a join, parquet written and read back) in a driver that dumps the classes it loaded
    when its JVM exits; the archive replaces ``archive`` only once complete."""
    from pyspark import SparkContext

    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="spark-classes-") as tmp:
        conf = spark_conf({}, f"file://{tmp}")
        conf["spark.driver.extraJavaOptions"] = (
            f"{QUICK_JIT_OPTIONS} -XX:ArchiveClassesAtExit={partial} -Xlog:cds=off"
        )
        _exercise(get_session(conf), Path(tmp))
        gateway = SparkContext._gateway
        SparkContext.getOrCreate().stop()
        assert gateway is not None
        gateway.shutdown()
        gateway.proc.stdin.close()  # the JVM exits when its stdin closes, and dumps on exit
        gateway.proc.wait(timeout=300)
    if not partial.is_file():
        raise UsageError(f"the JVM wrote no class archive at {partial}")
    partial.replace(archive)
    return archive


def _exercise(spark: Any, tmp: Path) -> None:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    lines = (
        json.dumps({"id": i % 7, "kind": "click", "at": f"2026-06-0{1 + i % 9}"})
        for i in range(200)
    )
    (tmp / "events.jsonl").write_text("\n".join(lines) + "\n")
    (tmp / "rows.csv").write_text("id,value\n" + "".join(f"{i},{i * 1.5}\n" for i in range(50)))
    events = spark.read.json(str(tmp / "events.jsonl")).withColumn("at", F.to_date("at"))
    rows = spark.read.option("header", True).csv(str(tmp / "rows.csv"))
    rows = rows.select(F.col("id").cast("int"), F.col("value").cast("double")).persist()
    per_id = events.groupBy("id").agg(F.count(F.lit(1)).alias("n"), F.max("at").alias("last"))
    ranked = per_id.withColumn("rank", F.row_number().over(Window.orderBy(F.desc("n"))))
    joined = rows.join(ranked, "id", "left").repartition(2, "id").sortWithinPartitions("id")
    joined.write.mode("overwrite").parquet(str(tmp / "out"))
    spark.read.parquet(str(tmp / "out")).agg(F.sum("value"), F.count(F.lit(1))).collect()
    rows.unpersist()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model_steps.spark_config",
        description="print the Spark configuration the ingest step would use",
    )
    p.add_argument(
        "--write-class-archive",
        nargs="?",
        const=str(CLASS_ARCHIVE),
        metavar="PATH",
        help=f"write the local driver's class archive instead (default {CLASS_ARCHIVE})",
    )
    p.add_argument("--lake", default=os.environ.get("LAKE_URI", "file:///tmp/lake"))
    p.add_argument(
        "--config",
        default=os.environ.get("STEP_CONFIG", "{}"),
        help="STEP_CONFIG JSON (default: $STEP_CONFIG)",
    )
    args = p.parse_args(argv)
    if args.write_class_archive:
        written = write_class_archive(Path(args.write_class_archive))
        print(f"class archive: {written} ({written.stat().st_size // 2**20} MiB)")
        return 0
    json.dump(spark_conf(json.loads(args.config), args.lake), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
