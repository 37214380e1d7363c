"""The DAGs' own pods and MPIJobs, rendered by the control plane (python -m mlplatform.render), checked
against the platform chart: checkov, kubernetes-validate --strict, and every name a pod refers to
(service account, priority class, ConfigMap, namespace) exists in the rendered platform chart.

The image manifest the render uses is written by CI's own writer (ci/image_manifest.py), so this also
checks that what CI publishes is what the DAG factory accepts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from delivery_helpers import (
    K8S_VERSION,
    REPO,
    STEP_KINDS,
    STEPS_NAMESPACE,
    assert_checkov_clean,
    checkov,
    output_of,
    parse_charts,
    render_charts,
    restricted_violations,
    run,
    tool,
)

from mlplatform.runtime.pods import registry_secret_name
from mlplatform_contract.registry_access import step_username


@pytest.fixture(scope="module")
def rendered_charts(tmp_path_factory) -> dict[str, Path]:
    return render_charts(tmp_path_factory.mktemp("helm-rendered"))


@pytest.fixture(scope="module")
def rendered_objects(rendered_charts) -> dict[str, list[dict]]:
    return parse_charts(rendered_charts)


CONTROL_PLANE_PYTHON = REPO / ".venv" / "bin" / "python"
sys.path.insert(0, str(REPO / "ci"))
from model_images import models_with_extras  # noqa: E402

# the models whose pyproject declares extra requirements: their steps run images of their own
MODELS_WITH_EXTRAS = tuple(models_with_extras(REPO / "models"))
REGISTRY = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

# Checks that do not apply to run-to-completion step pods. Each waiver names its reason; checkov is
# told to skip only these, and only for the DAGs' pods (the charts get no such waiver).
STEP_POD_WAIVERS = {
    "CKV_K8S_8": "liveness probe: a step pod runs a batch command to completion; there is no server "
    "to probe, and a hung step is bounded by activeDeadlineSeconds",
    "CKV_K8S_9": "readiness probe: step pods receive no traffic, nothing routes to them",
    "CKV_K8S_15": "imagePullPolicy Always: images are pinned by sha256 digest, so IfNotPresent can never run "
    "a different image; Always would only add registry round-trips per pod",
    "CKV_K8S_35": "secret as env: the agreed step contract hands publish its CRM token as CRM_API_TOKEN; the "
    "value comes from the customer's CRM Secret via secretKeyRef and never appears in a manifest or image",
}


def airflow_kubernetes_connection() -> str:
    """The kubernetes_default connection helm/airflow/values.yaml gives Airflow (sidecar image, limits)."""
    values = yaml.safe_load((REPO / "helm" / "airflow" / "values.yaml").read_text())
    env = {e["name"]: e["value"] for e in values["env"]}
    return env["AIRFLOW_CONN_KUBERNETES_DEFAULT"]


@pytest.fixture(scope="module")
def rendered_pods(tmp_path_factory) -> Path:
    if not CONTROL_PLANE_PYTHON.exists():
        pytest.fail(f"control-plane venv missing ({CONTROL_PLANE_PYTHON}): run `make setup`")
    work = tmp_path_factory.mktemp("dag-pods")
    digests = work / "digests"
    digests.mkdir()
    for i, kind in enumerate(STEP_KINDS, start=1):
        (digests / kind).write_text(f"sha256:{i:064x}")
    for model in MODELS_WITH_EXTRAS:  # what their image builds leave (ci/model_images.py's jobs)
        (work / "model-digests" / model).mkdir(parents=True)
        for i, kind in enumerate(STEP_KINDS, start=1):
            (work / "model-digests" / model / kind).write_text(f"sha256:{i + 100:064x}")
    manifest = work / "image_manifest.json"
    subprocess.run(
        [sys.executable, str(REPO / "ci" / "image_manifest.py"), "--registry", REGISTRY, "--commit", "a" * 40,
         "--digests", str(digests), "--out", str(manifest), "--model-digests", str(work / "model-digests"),
         "--models-dir", str(REPO / "models")],
        check=True, capture_output=True,
    )  # fmt: skip
    out = work / "rendered"
    proc = run(
        [
            str(CONTROL_PLANE_PYTHON),
            "-m",
            "mlplatform.render",
            "--dags-folder",
            "dags",
            "--out",
            str(out),
        ],
        env={
            "PYTHONPATH": str(REPO / "plugins"),
            "MLOPS_RUNTIME": "kubernetes",
            "MLOPS_IMAGE_MANIFEST": str(manifest),
            "AIRFLOW_HOME": str(work / "airflow-home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Render with the connection production uses, so the XCom sidecar is what the cluster gets.
            "AIRFLOW_CONN_KUBERNETES_DEFAULT": airflow_kubernetes_connection(),
        },
    )
    assert proc.returncode == 0, output_of(proc)
    files = sorted(out.glob("*.yaml"))
    assert files, f"the control plane rendered nothing:\n{output_of(proc)}"
    return out


def objects(directory: Path) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted(directory.glob("*.yaml"))]


def pod_specs(obj: dict) -> list[dict]:
    """The pod specs an object creates: a Pod's own, or every MPIJob replica template."""
    if obj["kind"] == "Pod":
        return [obj["spec"]]
    if obj["kind"] == "MPIJob":
        return [r["template"]["spec"] for r in obj["spec"]["mpiReplicaSpecs"].values()]
    raise AssertionError(f"unexpected kind {obj['kind']}")


def pod_labels(obj: dict) -> list[dict]:
    if obj["kind"] == "Pod":
        return [obj["metadata"]["labels"]]
    return [r["template"]["metadata"]["labels"] for r in obj["spec"]["mpiReplicaSpecs"].values()]


def test_every_step_kind_is_rendered(rendered_pods):
    labels = [labels for obj in objects(rendered_pods) for labels in pod_labels(obj)]
    assert {label["mlops.io/kind"] for label in labels} == set(STEP_KINDS)
    # a model's own step (next_spend's spend_report) and the monitoring DAG's monitor run as one of
    # the platform's kinds
    assert {label["mlops.io/step"] for label in labels} == {*STEP_KINDS, "spend_report", "monitor"}
    monitor = {label["mlops.io/kind"] for label in labels if label["mlops.io/step"] == "monitor"}
    assert monitor == {"ingest"}


def test_a_model_with_extra_requirements_runs_its_own_images(rendered_pods):
    """Its every step (its monitor too) in ``mlops/models/<model>/<kind>``, the others in the
    shared ``mlops/<kind>``: the manifest's models section, as CI's writer publishes it."""
    assert MODELS_WITH_EXTRAS, "an example model declares extra requirements (issue 23)"
    seen = set()
    for obj in objects(rendered_pods):
        for labels, spec in zip(pod_labels(obj), pod_specs(obj), strict=True):
            model, kind = labels["mlops.io/pipeline"], labels["mlops.io/kind"]
            own = f"/mlops/models/{model}/{kind}@" if model in MODELS_WITH_EXTRAS else None
            base = [c for c in spec["containers"] if c["name"] == "base"] or spec["containers"][:1]
            image = base[0]["image"]
            assert own in image if own else f"/mlops/{kind}@" in image, (labels, image)
            seen.add(model)
    assert set(MODELS_WITH_EXTRAS) <= seen


def test_pods_use_service_accounts_the_platform_chart_renders(rendered_pods, rendered_objects):
    platform = rendered_objects["platform"]
    service_accounts = {o["metadata"]["name"] for o in platform if o["kind"] == "ServiceAccount"}
    for obj in objects(rendered_pods):
        assert obj["metadata"]["namespace"] == STEPS_NAMESPACE, obj["metadata"]["name"]
        for labels, spec in zip(pod_labels(obj), pod_specs(obj), strict=True):
            sa = spec["serviceAccountName"]
            assert sa in service_accounts, (
                f"{obj['metadata']['name']}: {sa} not rendered by helm/platform"
            )
            assert sa == f"step-{labels['mlops.io/kind']}"


def test_pods_refer_only_to_objects_the_platform_provides(rendered_pods, rendered_objects):
    platform = rendered_objects["platform"]
    priority_classes = {o["metadata"]["name"] for o in platform if o["kind"] == "PriorityClass"}
    configmaps = {o["metadata"]["name"] for o in platform if o["kind"] == "ConfigMap"}
    external_secrets = {
        o["spec"]["target"]["name"] for o in platform if o["kind"] == "ExternalSecret"
    }
    bundles = {o["metadata"]["name"] for o in platform if o["kind"] == "Bundle"}
    for obj in objects(rendered_pods):
        for labels, spec in zip(pod_labels(obj), pod_specs(obj), strict=True):
            assert spec["priorityClassName"] in priority_classes
            expected = (
                "ml-pipeline-training"
                if labels["mlops.io/step"] == "train"
                else "ml-pipeline-standard"
            )
            assert spec["priorityClassName"] == expected
            for container in spec["containers"]:
                for source in container.get("envFrom", []) or []:
                    assert "secretRef" not in source, "no pod loads a Secret whole"
                    if "configMapRef" in source:
                        assert source["configMapRef"]["name"] in configmaps
                # only publish reads a Secret, key by key: its customer's CRM one (crm.connection_id,
                # _ as -), created per customer as docs/publish.md says
                keys = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                        for e in container.get("env", []) or []
                        if "secretKeyRef" in (e.get("valueFrom") or {})}  # fmt: skip
                is_publish = labels["mlops.io/step"] == "publish" and container["name"] == "base"
                crm = {("crm-default", "CRM_API_TOKEN"), ("crm-default", "CRM_BASE_URL")}
                # the steps that call MLflow read their own registry identity, written per
                # (role, customer) by the registry provisioning (docs/registry-access.md)
                user = step_username(labels["mlops.io/step"], labels["mlops.io/customer"])
                # (an MPIJob's launcher: horovodrun hands it to every rank), from the Secret the
                # platform chart's ExternalSecret of that identity writes
                registry = (
                    {(registry_secret_name(user), k) for k in ("username", "password")}
                    if user and container["name"] in ("base", "launcher")
                    else set()
                )
                assert keys == (crm if is_publish else set()) | registry, (labels, keys)
                assert {name for name, _ in registry} <= external_secrets, labels
            for volume in spec.get("volumes") or []:  # the MLflow CA: trust-manager's Bundle
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in configmaps | bundles


def test_every_container_pinned_by_digest_with_limits(rendered_pods):
    for obj in objects(rendered_pods):
        for spec in pod_specs(obj):
            for container in spec["containers"]:
                assert "@sha256:" in container["image"], (
                    f"{obj['metadata']['name']}/{container['name']}"
                )
                limits = (container.get("resources") or {}).get("limits") or {}
                assert {"cpu", "memory"} <= set(limits), (
                    f"{obj['metadata']['name']}/{container['name']}"
                )


def test_gpu_pods_land_on_the_tainted_gpu_pool(rendered_pods):
    for obj in objects(rendered_pods):
        for spec in pod_specs(obj):
            wants_gpu = any(
                "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})
                for c in spec["containers"]
            )
            if wants_gpu:
                assert spec["nodeSelector"]["mlops.io/node-pool"] == "gpu"
                assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])


def test_rendered_pods_pass_kubernetes_validate_strict(rendered_pods):
    pods = [
        str(p)
        for p in sorted(rendered_pods.glob("*.yaml"))
        if yaml.safe_load(p.read_text())["kind"] == "Pod"
    ]
    assert pods
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, *pods])
    assert proc.returncode == 0, output_of(proc)


def test_checkov_on_rendered_pods_with_the_platform_policies(
    rendered_pods, rendered_charts, tmp_path
):
    """Pods are scanned together with helm/platform so graph checks see the namespace's NetworkPolicies."""
    scan = tmp_path / "scan"
    scan.mkdir()
    for path in rendered_pods.glob("*.yaml"):
        (scan / path.name).write_text(path.read_text())
    (scan / "platform.yaml").write_text(rendered_charts["platform"].read_text())
    summary = checkov(["-d", str(scan), "--skip-check", ",".join(STEP_POD_WAIVERS)], "kubernetes")
    print(f"checkov kubernetes (DAG pods + platform): passed={summary['passed']} failed={summary['failed']} "
          f"waived={sorted(STEP_POD_WAIVERS)}")  # fmt: skip
    assert_checkov_clean(summary, min_passed=100)


def test_every_pod_meets_pod_security_restricted(rendered_pods):
    """ml-steps enforces Pod Security `restricted` (helm/platform values podSecurity): every step pod
    (XCom sidecar included) and every MPIJob replica must pass it."""
    for obj in objects(rendered_pods):
        for spec in pod_specs(obj):
            names = [c["name"] for c in spec["containers"]]
            assert not restricted_violations(spec), (obj["metadata"]["name"], names)
