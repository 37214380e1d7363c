"""The platform chart's ValidatingAdmissionPolicy for Spark executors: its CEL, as rendered, evaluated
with a CEL implementation (cel-python, tests/delivery/cel_eval.py) against the pod the Spark driver
really creates (the chart's executor template plus what Spark and the EKS IRSA webhook add) and
against pods a model's feature code in the driver could try to create instead."""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable

import pytest
import yaml
from delivery_helpers import (
    K8S_VERSION,
    REPO,
    SPARK_NAMESPACE,
    output_of,
    parse_charts,
    render_charts,
    run,
    tool,
)

DIGEST = "sha256:" + "a" * 64
REGISTRY = "111111111111.dkr.ecr.REPLACE_ME_REGION.amazonaws.com"  # helm/platform values
INGEST_IMAGE = f"{REGISTRY}/mlops/ingest@{DIGEST}"


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> list[dict]:
    return parse_charts(render_charts(tmp_path_factory.mktemp("helm-rendered")))["platform"]


@pytest.fixture(scope="module")
def policy(platform) -> dict:
    (found,) = [o for o in platform if o["kind"] == "ValidatingAdmissionPolicy"]
    return found


def executor_pod(platform: list[dict]) -> dict:
    """What Spark submits from the chart's template (client mode, model_steps/spark_config.py),
    after the EKS pod identity webhook added the IRSA token volume and variables."""
    (template_cm,) = [
        o for o in platform
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "spark-executor-pod-template"
    ]  # fmt: skip
    pod = yaml.safe_load(template_cm["data"]["executor-pod-template.yaml"])
    pod["metadata"].update(name="ingest-exec-1", namespace=SPARK_NAMESPACE)
    pod["metadata"]["labels"].update({"mlops.io/spark-role": "executor", "spark-exec-id": "1"})
    spec = pod["spec"]
    spec.update(
        serviceAccountName="spark-executor", restartPolicy="Never", hostname="ingest-exec-1"
    )
    (container,) = spec["containers"]
    container.update(image=INGEST_IMAGE, args=["executor"])
    container["env"] = [
        {"name": "SPARK_DRIVER_URL", "value": "spark://CoarseGrainedScheduler@10.0.0.5:7078"},
        {"name": "SPARK_EXECUTOR_ID", "value": "1"},
        {"name": "SPARK_EXECUTOR_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "AWS_ROLE_ARN", "value": "arn:aws:iam::111111111111:role/mlops-step-ingest"},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE",
         "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
    ]  # fmt: skip
    spec["volumes"] += [
        {"name": "spark-local-dir-1", "emptyDir": {}},
        {"name": "aws-iam-token", "projected": {"sources": [{"serviceAccountToken": {
            "audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}]}},
    ]  # fmt: skip
    return pod


def mutate(pod: dict, change: Callable[[dict], None]) -> dict:
    out = copy.deepcopy(pod)
    change(out)
    return out


def container(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


# Each forbidden pod: what feature code in the driver could try, and the policy message that refuses it.
FORBIDDEN: dict[str, tuple[Callable[[dict], None], str]] = {
    "another account (mlflow's IRSA role)": (
        lambda p: p["spec"].update(serviceAccountName="mlflow"), "no other account"),
    "the publish step's account": (
        lambda p: p["spec"].update(serviceAccountName="step-publish"), "no other account"),
    "no account named (default)": (
        lambda p: p["spec"].pop("serviceAccountName"), "no other account"),
    "an API token": (
        lambda p: p["spec"].update(automountServiceAccountToken=True), "no Kubernetes API token"),
    "another image": (
        lambda p: container(p).update(image=f"{REGISTRY}/mlops/score@{DIGEST}"), "ingest image"),
    "the ingest image by tag": (
        lambda p: container(p).update(image=f"{REGISTRY}/mlops/ingest:latest"), "ingest image"),
    "an image from elsewhere": (
        lambda p: container(p).update(image=f"evil.example.com/mlops/ingest@{DIGEST}"), "ingest image"),
    "an init container with another image": (
        lambda p: p["spec"].update(initContainers=[{"name": "x", "image": "busybox"}]), "ingest image"),
    "a Secret key in env": (
        lambda p: container(p)["env"].append({"name": "T", "valueFrom": {"secretKeyRef": {
            "name": "crm-default", "key": "CRM_API_TOKEN"}}}), "refer to no Secret"),
    "a Secret in envFrom": (
        lambda p: container(p).update(envFrom=[{"secretRef": {"name": "mlflow-db"}}]),
        "refer to no Secret"),
    "a Secret volume": (
        lambda p: p["spec"]["volumes"].append({"name": "s", "secret": {"secretName": "crm-default"}}),
        "no Secret, hostPath"),
    "a Secret in a projected volume": (
        lambda p: p["spec"]["volumes"].append({"name": "s", "projected": {"sources": [
            {"secret": {"name": "crm-default"}}]}}), "no Secret, hostPath"),
    "the node's filesystem": (
        lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "no Secret, hostPath"),
    "a persistent volume claim": (
        lambda p: p["spec"]["volumes"].append({"name": "c", "persistentVolumeClaim": {
            "claimName": "other"}}), "no Secret, hostPath"),
    "the host network": (
        lambda p: p["spec"].update(hostNetwork=True), "share no host namespace"),
    "the host PID namespace": (
        lambda p: p["spec"].update(hostPID=True), "share no host namespace"),
    "a chosen node": (
        lambda p: p["spec"].update(nodeName="ip-10-0-0-1"), "placed by the scheduler"),
    "no executor label": (
        lambda p: p["metadata"]["labels"].pop("mlops.io/spark-role"), "mlops.io/spark-role"),
}  # fmt: skip


def evaluate(policy: dict, pods: list[dict]) -> list[list]:
    expressions = [v["expression"] for v in policy["spec"]["validations"]]
    done = subprocess.run(
        [tool("python"), str(REPO / "tests" / "delivery" / "cel_eval.py")],
        input=json.dumps({"expressions": expressions, "objects": pods}),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, output_of(done)
    return json.loads(done.stdout)


def test_the_policy_binds_to_the_executor_namespace_and_denies(platform, policy):
    selector = {"matchLabels": {"kubernetes.io/metadata.name": SPARK_NAMESPACE}}
    assert policy["spec"]["matchConstraints"]["namespaceSelector"] == selector
    assert policy["spec"]["failurePolicy"] == "Fail"
    (binding,) = [o for o in platform if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == selector


def test_the_executor_spark_creates_is_admitted(platform, policy):
    pods = [executor_pod(platform)]
    model_image = f"{REGISTRY}/mlops/models/next_spend/ingest@{DIGEST}"
    pods.append(mutate(pods[0], lambda p: container(p).update(image=model_image)))
    for verdicts in evaluate(policy, pods):
        assert verdicts == [True] * len(verdicts), verdicts


def test_every_forbidden_pod_is_refused_with_its_reason(platform, policy):
    allowed = executor_pod(platform)
    names = list(FORBIDDEN)
    pods = [mutate(allowed, FORBIDDEN[n][0]) for n in names]
    messages = [v["message"] for v in policy["spec"]["validations"]]
    for name, verdicts in zip(names, evaluate(policy, pods), strict=True):
        refused = [m for m, ok in zip(messages, verdicts, strict=True) if ok is not True]
        assert refused, f"{name}: admitted"
        assert any(FORBIDDEN[name][1] in m for m in refused), (name, refused)


def test_the_rendered_policy_passes_kubernetes_validate(policy, tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(path)])
    assert proc.returncode == 0, output_of(proc)
