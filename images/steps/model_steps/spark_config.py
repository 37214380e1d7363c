"""Spark configuration for the ingest step: local on the embedded default, s3a + IRSA and optionally
Spark-on-Kubernetes executors in production.

Everything is derived from ``STEP_CONFIG["data"]["spark"]`` (all keys optional) and the lake URI:

=========================  ==================================================================
key                        meaning (default)
=========================  ==================================================================
master                     ``local[N]`` (``local[2]``) or ``k8s://https://kubernetes.default.svc``
driver_memory              JVM heap of the driver (``2g``); in local mode also the executors' heap
shuffle_partitions         ``spark.sql.shuffle.partitions`` (8 local, 200 on Kubernetes)
executor_instances         Kubernetes executors (4)
executor_cores             cores per executor (2)
executor_memory            heap per executor (``6g``); overhead adds 20%
k8s_namespace              namespace of the executor pods (``ml-workloads``)
k8s_image                  image for executors (``SPARK_EXECUTOR_IMAGE`` env, i.e. the ingest image)
k8s_service_account        service account of executors (``ml-steps``: the IRSA role for the lake)
extra_conf                 free-form ``{spark.key: value}`` applied last
=========================  ==================================================================

s3a cannot run here (hadoop-aws jars cannot be fetched); the production image carries
``hadoop-aws`` and ``spark-hadoop-cloud`` matching Spark 4's Hadoop 3.4 (AWS SDK v2), and the
configuration below is rendered and tested as data. ``python -m model_steps.spark_config`` prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

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
    env = dict(os.environ if env is None else env)
    sc = dict(((config or {}).get("data") or {}).get("spark") or {})
    master = str(sc.get("master", "local[2]"))
    on_k8s = master.startswith("k8s://")
    conf: dict[str, str] = {
        "spark.master": master,
        "spark.app.name": "model-steps-ingest",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
        "spark.sql.shuffle.partitions": str(sc.get("shuffle_partitions", 200 if on_k8s else 8)),
        "spark.driver.memory": str(sc.get("driver_memory", "2g")),
        "spark.sql.sources.partitionOverwriteMode": "dynamic",
        "spark.sql.parquet.compression.codec": "snappy",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
    }
    if not on_k8s:
        conf["spark.driver.bindAddress"] = "127.0.0.1"
        conf["spark.driver.host"] = "127.0.0.1"
        # the raw zone is ~1 file per table and day: list them in the driver instead of starting a
        # distributed listing job per table (halves a small ingest on a local disk)
        conf["spark.sql.sources.parallelPartitionDiscovery.threshold"] = "100000"
    if lake_uri.startswith(("s3://", "s3a://")):
        conf.update(S3A_CONF)
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            conf["spark.hadoop.fs.s3a.endpoint.region"] = region
        if env.get("S3_ENDPOINT_URL"):  # e.g. a local S3 stand-in
            conf["spark.hadoop.fs.s3a.endpoint"] = env["S3_ENDPOINT_URL"]
            conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    if on_k8s:
        executor_memory = str(sc.get("executor_memory", "6g"))
        conf.update(
            {
                # client mode: the driver is this step's pod; executors are pods it creates
                "spark.submit.deployMode": "client",
                "spark.kubernetes.namespace": str(sc.get("k8s_namespace", "ml-workloads")),
                "spark.kubernetes.container.image": str(
                    sc.get(
                        "k8s_image", env.get("SPARK_EXECUTOR_IMAGE", "model-steps-ingest:latest")
                    )
                ),
                "spark.kubernetes.authenticate.serviceAccountName": str(
                    sc.get("k8s_service_account", "ml-steps")
                ),
                "spark.kubernetes.executor.serviceAccountName": str(
                    sc.get("k8s_service_account", "ml-steps")
                ),
                "spark.kubernetes.driver.pod.name": env.get(
                    "HOSTNAME", ""
                ),  # executors owned by the pod
                "spark.driver.host": env.get("POD_IP", "0.0.0.0"),
                "spark.driver.bindAddress": "0.0.0.0",
                "spark.driver.port": "7078",
                "spark.blockManager.port": "7079",
                "spark.executor.instances": str(sc.get("executor_instances", 4)),
                "spark.executor.cores": str(sc.get("executor_cores", 2)),
                "spark.executor.memory": executor_memory,
                "spark.executor.memoryOverheadFactor": "0.2",
                "spark.kubernetes.executor.request.cores": str(sc.get("executor_cores", 2)),
                "spark.kubernetes.executor.label.app.kubernetes.io/part-of": "ml-platform",
                "spark.kubernetes.executor.label.ml-platform/step": "ingest",
                "spark.kubernetes.executor.deleteOnTermination": "true",
                "spark.kubernetes.executor.podTemplateFile": str(
                    sc.get("executor_pod_template", "/opt/spark/conf/executor-pod-template.yaml")
                ),
                # executors scale with the data; shuffle tracking replaces the external shuffle service
                "spark.dynamicAllocation.enabled": "true",
                "spark.dynamicAllocation.shuffleTracking.enabled": "true",
                "spark.dynamicAllocation.minExecutors": "1",
                "spark.dynamicAllocation.maxExecutors": str(sc.get("executor_instances", 4)),
            }
        )
    for k, v in dict(sc.get("extra_conf") or {}).items():
        conf[str(k)] = str(v)
    return conf


def get_session(conf: dict[str, str]):  # type: ignore[no-untyped-def]
    """A SparkSession with ``conf`` (reuses the active one, e.g. the test session)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder
    for k, v in conf.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m model_steps.spark_config",
        description="print the Spark configuration the ingest step would use",
    )
    p.add_argument("--lake", default=os.environ.get("LAKE_URI", "file:///tmp/lake"))
    p.add_argument(
        "--config",
        default=os.environ.get("STEP_CONFIG", "{}"),
        help="STEP_CONFIG JSON (default: $STEP_CONFIG)",
    )
    args = p.parse_args(argv)
    json.dump(spark_conf(json.loads(args.config), args.lake), sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
