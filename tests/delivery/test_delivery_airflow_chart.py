"""The official Apache Airflow chart (1.21.0, vendored in ../shared/vendor) rendered with this project's
values: helm's own schema check of the values, no deprecated keys, kubernetes-validate --strict, checkov,
and the platform's invariants on what would be deployed (KubernetesExecutor, git-sync, remote logs,
IRSA, no default user or generated credentials, every Airflow image and task pod pinned by digest).

The task pod is built the way the scheduler builds it: the cncf provider's PodGenerator, from the
rendered pod template file and the rendered airflow.cfg's worker image settings.
"""

from __future__ import annotations

import base64
import configparser
import json
from pathlib import Path

import pytest
import yaml
from delivery_helpers import (
    AIRFLOW_CHART_VERSION,
    AIRFLOW_COMPONENTS,
    AIRFLOW_NAMESPACE,
    AIRFLOW_VALUES,
    K8S_VERSION,
    STEPS_NAMESPACE,
    airflow_service_account,
    checkov,
    load_yaml_docs,
    output_of,
    parse_charts,
    render_charts,
    report,
    run,
    tool,
    vendored,
)

DIGEST = "sha256:" + "1" * 64
# Checks the official chart's own templates fail by design, each with the reason it is accepted. The
# project's values cannot change these (the chart hard-codes them); everything else must pass.
CHART_WAIVERS: dict[str, str] = {
    "CKV_K8S_21": "default namespace: the chart's templates omit metadata.namespace; helm installs them "
    "into -n airflow",
    "CKV_K8S_15": "imagePullPolicy Always: Airflow images are pinned by digest, so IfNotPresent cannot run "
    "another image",
    "CKV_K8S_43": "digest: the chart's own git-sync and statsd-exporter images come by tag; pin them in "
    "the deploy's override (images.gitSync / images.statsd tag '<tag>@sha256:...', docs/deploy.md)",
    "CKV_K8S_22": "read-only root filesystem: Airflow components write under AIRFLOW_HOME (generated "
    "config, pid files); the chart offers no writable-volume layout for a read-only root",
    "CKV_K8S_35": "secrets as env: the chart hands the metadata DB connection, Fernet and JWT keys to "
    "Airflow as AIRFLOW__* variables from Secrets; Airflow reads its config from env, not files",
    "CKV_K8S_38": "token mounted: checkov reads the pod spec; the chart sets automount on the accounts "
    "(false for dag-processor, statsd, migrations, asserted below); scheduler, triggerer and API "
    "server call the Kubernetes API (task pods, MPIJob triggers, pod logs)",
    "CKV_K8S_8": "liveness probe: the sidecars (git-sync, log groomer) have no health endpoint; the "
    "Airflow containers carry the chart's probes",
    "CKV_K8S_9": "readiness probe: scheduler, DAG processor and triggerer receive no traffic",
    "CKV2_K8S_6": "network policy: chart 1.21.0 has no NetworkPolicy for the DAG processor or the "
    "migrations job; both only connect out (database, git) and serve nothing",
}


@pytest.fixture(scope="module")
def chart() -> Path:
    path = vendored(f"apache-airflow-chart-{AIRFLOW_CHART_VERSION}")
    assert yaml.safe_load((path / "Chart.yaml").read_text())["version"] == AIRFLOW_CHART_VERSION
    return path


def helm_template(chart: Path, *extra: str):
    return run([tool("helm"), "template", "airflow", str(chart), "-n", AIRFLOW_NAMESPACE,
                "-f", str(AIRFLOW_VALUES), "--skip-tests", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def rendered(chart, tmp_path_factory) -> Path:
    """The chart with the values and the one thing every deploy's override file must add: a digest."""
    work = tmp_path_factory.mktemp("airflow-chart")
    overrides = work / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"images": {"airflow": {"digest": DIGEST}}}))
    proc = helm_template(chart, "-f", str(overrides))
    assert proc.returncode == 0, output_of(proc)
    out = work / "airflow.yaml"
    out.write_text(proc.stdout)
    return out


@pytest.fixture(scope="module")
def objects(rendered) -> list[dict]:
    return load_yaml_docs(rendered.read_text())


def named(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.fixture(scope="module")
def config(objects) -> dict:
    return named(objects, "ConfigMap")["airflow-config"]["data"]


@pytest.fixture(scope="module")
def airflow_cfg(config) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(config["airflow.cfg"])
    return parser


def test_a_render_without_an_image_digest_is_refused(chart):
    proc = helm_template(chart)
    assert proc.returncode != 0
    assert "images.airflow.digest must be set" in proc.stderr


def test_values_use_no_key_the_chart_marks_deprecated(chart):
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load(AIRFLOW_VALUES.read_text())

    def walk(node: dict, props: dict, path: str) -> list[str]:
        found = []
        for key, value in node.items():
            spec = props.get(key, {})
            where = f"{path}{key}"
            if "deprecated" in spec.get("description", "").lower():
                found.append(f"{where}: {spec['description'][:120]}")
            if isinstance(value, dict) and "properties" in spec:
                found += walk(value, spec["properties"], f"{where}.")
        return found

    assert walk(values, schema["properties"], "") == []


def test_rendered_chart_passes_kubernetes_validate_strict(rendered):
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(rendered)])
    assert proc.returncode == 0, output_of(proc)


def test_checkov_on_the_rendered_chart(rendered):
    summary = checkov(["-f", str(rendered)], "kubernetes")
    report("kubernetes (official Airflow chart)", summary)
    failed = {c["check_id"] for c in summary["failed_checks"]}
    unwaived = failed - set(CHART_WAIVERS)
    assert not unwaived, "\n".join(
        f"{c['check_id']} {c.get('check_name', '')} :: {c.get('resource')}"
        for c in summary["failed_checks"] if c["check_id"] in unwaived
    )  # fmt: skip
    assert summary["passed"] >= 100, summary["passed"]


def test_kubernetes_executor_git_sync_and_remote_logs(airflow_cfg, objects, config):
    assert airflow_cfg["core"]["executor"] == "KubernetesExecutor"
    assert airflow_cfg["kubernetes_executor"]["namespace"] == AIRFLOW_NAMESPACE
    assert airflow_cfg["core"]["plugins_folder"] == "/opt/airflow/dags/repo/plugins"
    assert airflow_cfg["logging"]["remote_logging"] == "True"
    assert airflow_cfg["logging"]["remote_base_log_folder"].startswith("s3://")
    deployments = named(objects, "Deployment")
    for component in ("airflow-dag-processor", "airflow-triggerer"):
        containers = {
            c["name"]: c for c in deployments[component]["spec"]["template"]["spec"]["containers"]
        }
        git = {e["name"]: e.get("value") for e in containers["git-sync"]["env"]}
        assert git["GITSYNC_REF"] == "airflow-dags", component
        assert git["GITSYNC_REPO"].startswith("https://"), component
    template = yaml.safe_load(config["pod_template_file.yaml"])
    assert "git-sync-init" in {c["name"] for c in template["spec"]["initContainers"]}
    assert not [o for o in objects if o["kind"] == "StatefulSet"], "no Redis, no Celery workers"


def test_every_airflow_service_account_assumes_the_irsa_role(objects):
    accounts = named(objects, "ServiceAccount")
    values = yaml.safe_load(AIRFLOW_VALUES.read_text())
    for component in AIRFLOW_COMPONENTS:
        name = airflow_service_account(values, component)["name"]
        assert accounts[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
            "arn:aws:iam::"
        ), name
    for quiet in ("airflow-dag-processor", "airflow-statsd", "airflow-migrate-database-job"):
        assert accounts[quiet]["automountServiceAccountToken"] is False, quiet
    raw = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    assert len(raw) == len(set(raw)), f"duplicate service accounts: {sorted(raw)}"


def test_no_default_user_and_no_credentials_generated_by_the_chart(objects):
    jobs = named(objects, "Job")
    assert "airflow-create-user" not in jobs, "chart 1.21.0 would create admin/admin"
    assert set(jobs) == {"airflow-run-airflow-migrations"}
    secrets = named(objects, "Secret")
    # The chart always writes the Celery broker URL Secret (empty here: no Redis) even for
    # KubernetesExecutor, and nothing reads it. Every credential Airflow uses is a Secret from step 4.
    assert set(secrets) == {"airflow-broker-url"}
    assert (
        "password"
        not in base64.b64decode(secrets["airflow-broker-url"]["data"]["connection"]).decode()
    )
    for o in objects:
        pod = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            refs = [e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
            assert "airflow-broker-url" not in refs, o["metadata"]["name"]


def test_airflow_components_run_by_digest(objects):
    for o in objects:
        if o["kind"] not in ("Deployment", "Job"):
            continue
        pod = o["spec"]["template"]["spec"]
        for c in pod["containers"] + (pod.get("initContainers") or []):
            if "apache/airflow" in c["image"]:
                assert c["image"] == f"apache/airflow@{DIGEST}", (o["metadata"]["name"], c["name"])


def test_task_pods_built_by_the_executor_run_by_digest_as_airflow_worker(
    airflow_cfg, config, tmp_path
):
    """Build a task pod with the provider's PodGenerator, as KubernetesExecutor does."""
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator
    from kubernetes.client import ApiClient

    template = tmp_path / "pod_template_file.yaml"
    template.write_text(config["pod_template_file.yaml"])
    section = airflow_cfg["kubernetes_executor"]
    image = f"{section['worker_container_repository']}:{section['worker_container_tag']}"
    pod = PodGenerator.construct_pod(
        dag_id="customer_propensity__acme-foods", task_id="train", run_id="manual__1",
        pod_id="customer-propensity-train", try_number=1, map_index=-1, date=None,
        kube_image=image, args=["airflow", "tasks", "run"], pod_override_object=None,
        base_worker_pod=PodGenerator.deserialize_model_file(str(template)),
        namespace=section["namespace"], scheduler_job_id="1",
    )  # fmt: skip
    obj = ApiClient().sanitize_for_serialization(pod)
    base = next(c for c in obj["spec"]["containers"] if c["name"] == "base")
    assert base["image"] == f"apache/airflow:3.3.2-python3.11@{DIGEST}"
    assert obj["spec"]["serviceAccountName"] == "airflow-worker"
    assert base["resources"]["limits"] and base["resources"]["requests"]
    env = {e["name"]: e.get("value") for e in base["env"]}
    assert env["MLOPS_RUNTIME"] == "kubernetes" and env["MLOPS_K8S_NAMESPACE"] == STEPS_NAMESPACE
    path = tmp_path / "task-pod.yaml"
    path.write_text(yaml.safe_dump(obj))
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(path)])
    assert proc.returncode == 0, output_of(proc)


def test_platform_rbac_binds_the_rendered_worker_and_triggerer_accounts(objects, tmp_path):
    platform = parse_charts(render_charts(tmp_path))["platform"]
    binding = named(platform, "RoleBinding")["airflow-step-launcher"]
    accounts = named(objects, "ServiceAccount")
    bound = {s["name"] for s in binding["subjects"]}
    assert bound == {"airflow-worker", "airflow-triggerer"}
    for subject in binding["subjects"]:
        assert subject["namespace"] == AIRFLOW_NAMESPACE
        assert subject["name"] in accounts, f"{subject['name']} is not an account the chart creates"


def test_statsd_exporter_serves_what_the_platform_chart_scrapes(airflow_cfg, objects):
    """Airflow sends StatsD to the chart's exporter, whose Service the platform chart's
    ServiceMonitor airflow-statsd selects (component: statsd, port statsd-scrape)."""
    assert airflow_cfg["metrics"]["statsd_on"] == "True"
    assert airflow_cfg["metrics"]["statsd_host"] == "airflow-statsd"
    assert "airflow-statsd" in named(objects, "Deployment")
    service = named(objects, "Service")["airflow-statsd"]
    assert service["metadata"]["labels"]["component"] == "statsd"
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports["statsd-scrape"] == 9102 and ports["statsd-ingest"] == 9125


SIDECARS = ("git-sync", "log-groomer")
DATABASE_ENV = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW_CONN_AIRFLOW_DB",
}


def env_names(container: dict) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def test_task_pods_get_no_metadata_db_uri_and_no_fernet_key(config):
    """Airflow 3's worker model: task code reaches the API server only. The pod template of
    KubernetesExecutor task pods carries neither the database URI nor the Fernet key."""
    template = yaml.safe_load(config["pod_template_file.yaml"])
    for c in template["spec"]["containers"] + (template["spec"].get("initContainers") or []):
        assert not env_names(c) & DATABASE_ENV, c["name"]
        assert not [f for f in c.get("envFrom", []) if "secretRef" in f], c["name"]


def test_only_database_components_get_the_database_uri_and_fernet_key(objects):
    """Scheduler, DAG processor, triggerer, API server and the migration job get both, from the
    Secrets of docs/deploy.md step 5; nothing else does."""
    wanted = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY"}
    workloads = {**named(objects, "Deployment"), **named(objects, "Job")}
    for name in (
        "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-api-server",
        "airflow-run-airflow-migrations",
    ):  # fmt: skip
        pod = workloads[name]["spec"]["template"]["spec"]
        airflow = [c for c in pod["containers"] if not c["name"].endswith(SIDECARS)]
        for c in airflow:
            assert wanted <= env_names(c), (name, c["name"], sorted(env_names(c)))
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        for c in pod["containers"] + (pod.get("initContainers") or []):
            if c["name"].endswith(SIDECARS):
                assert not env_names(c) & DATABASE_ENV, (name, c["name"])
