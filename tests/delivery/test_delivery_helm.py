"""Helm: lint and render each chart with the real helm binary, validate the objects against the
Kubernetes OpenAPI schemas (kubernetes-validate --strict), checkov them, and hold the names the
control plane relies on (service accounts, priority classes, step-env, RBAC)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from delivery_helpers import (
    AIRFLOW_NAMESPACE,
    CHARTS,
    K8S_VERSION,
    MLFLOW_NAMESPACE,
    REPO,
    SPARK_NAMESPACE,
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

from mlplatform_contract.registry_access import STEP_ROLES


@pytest.fixture(scope="module")
def rendered_charts(tmp_path_factory) -> dict[str, Path]:
    return render_charts(tmp_path_factory.mktemp("helm-rendered"))


@pytest.fixture(scope="module")
def rendered_objects(rendered_charts) -> dict[str, list[dict]]:
    return parse_charts(rendered_charts)


HELM_DIR = REPO / "helm"
YAMLLINT_CONFIG = (
    "{extends: default, rules: {line-length: {max: 140}, document-start: disable, "
    "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}"
)


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("chart", CHARTS)
def test_helm_lint_strict(chart):
    proc = run(
        [tool("helm"), "lint", "--strict", str(HELM_DIR / chart), "--namespace", STEPS_NAMESPACE]
    )
    assert proc.returncode == 0, output_of(proc)


@pytest.mark.parametrize("chart", CHARTS)
def test_rendered_objects_pass_kubernetes_validate_strict(rendered_charts, chart):
    proc = run(
        [tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(rendered_charts[chart])]
    )
    assert proc.returncode == 0, output_of(proc)
    assert "passed" in proc.stdout


def test_checkov_on_rendered_charts_clean(rendered_charts):
    summary = checkov(["-d", str(rendered_charts["platform"].parent)], "kubernetes")
    print(f"checkov kubernetes (charts): passed={summary['passed']} failed={summary['failed']} "
          f"skipped={summary['skipped']}")  # fmt: skip
    assert_checkov_clean(summary, min_passed=100)


def test_yamllint_values_and_ci():
    files = [str(p) for p in sorted(HELM_DIR.glob("*/values*.yaml"))] + [
        str(HELM_DIR / c / "Chart.yaml") for c in CHARTS
    ] + [str(REPO / ".gitlab-ci.yml")]  # fmt: skip
    proc = run([tool("yamllint"), "--strict", "-d", YAMLLINT_CONFIG, *files])
    assert proc.returncode == 0, output_of(proc)


# ---- platform chart: the names the DAGs' pods use ----------------------------------------------


def test_step_service_accounts_irsa_annotated_without_api_token(rendered_objects):
    sas = by_kind(rendered_objects["platform"], "ServiceAccount")
    # External Secrets' store account for the registry identities lives in ESO's namespace, where
    # no step pod runs (test_delivery_registry.py)
    assert set(sas) == {f"step-{k}" for k in STEP_KINDS} | {
        "spark-executor", "registry-identities-reader"
    }  # fmt: skip
    assert sas["spark-executor"]["metadata"]["namespace"] == SPARK_NAMESPACE
    assert sas.pop("registry-identities-reader")["metadata"]["namespace"] == "external-secrets"
    ingest_role = sas["step-ingest"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert (
        sas["spark-executor"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == ingest_role
    )
    for name, sa in sas.items():
        if name != "spark-executor":
            assert sa["metadata"]["namespace"] == STEPS_NAMESPACE
        assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
            "arn:aws:iam::"
        ), name
        assert sa["automountServiceAccountToken"] is False


def test_airflow_worker_may_create_pods_and_mpijobs_in_ml_steps(rendered_objects):
    role = by_kind(rendered_objects["platform"], "Role")["airflow-step-launcher"]
    assert role["metadata"]["namespace"] == STEPS_NAMESPACE
    rules = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert {"create", "get", "watch", "delete"} <= rules[("", "pods")]
    assert {"get"} <= rules[("", "pods/log")]
    assert {"create"} <= rules[("", "pods/exec")], "KubernetesPodOperator reads XCom via exec"
    assert {"create", "get", "watch", "delete"} <= rules[("kubeflow.org", "mpijobs")]
    assert not any(r in ("secrets", "*") for (_, r) in rules), "no access to secrets or wildcards"
    binding = by_kind(rendered_objects["platform"], "RoleBinding")["airflow-step-launcher"]
    subjects = {(s["namespace"], s["name"]) for s in binding["subjects"]}
    assert (AIRFLOW_NAMESPACE, "airflow-worker") in subjects


def test_ingest_may_run_spark_executors_in_their_own_namespace_only(rendered_objects, tmp_path):
    """Spark client mode: the ingest pod (step-ingest) creates executor pods from the chart's
    template in the executors' namespace only (no Role in ml-steps), and the driver and executors
    may talk on the two Spark ports only."""
    objs = rendered_objects["platform"]
    roles = [o for o in objs if o["kind"] == "Role"]
    assert {
        r["metadata"]["name"] for r in roles if r["metadata"]["namespace"] == STEPS_NAMESPACE
    } == {"airflow-step-launcher"}
    role = by_kind(objs, "Role")["spark-driver"]
    assert role["metadata"]["namespace"] == SPARK_NAMESPACE
    rules = {(g, r): set(rule["verbs"]) for rule in role["rules"]
             for g in rule["apiGroups"] for r in rule["resources"]}  # fmt: skip
    assert {"create", "watch", "delete"} <= rules[("", "pods")]
    assert not any(r in ("secrets", "*", "pods/exec") for (_, r) in rules)
    binding = by_kind(objs, "RoleBinding")["spark-driver"]
    assert binding["metadata"]["namespace"] == SPARK_NAMESPACE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "step-ingest", "namespace": STEPS_NAMESPACE}
    ]
    template = yaml.safe_load(
        by_kind(objs, "ConfigMap")["spark-executor-pod-template"]["data"][
            "executor-pod-template.yaml"
        ]
    )
    template["metadata"]["name"] = "executor"
    template["spec"]["containers"][0]["image"] = "registry/mlops/ingest@sha256:" + "a" * 64
    pod_file = tmp_path / "spark-executor-template.yaml"
    pod_file.write_text(yaml.safe_dump(template))
    proc = run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, str(pod_file)])
    assert proc.returncode == 0, output_of(proc)
    spec = template["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["nodeSelector"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False
    policy = by_kind(objs, "NetworkPolicy")["ingest-spark"]["spec"]
    assert policy["podSelector"] == {"matchLabels": {"mlops.io/step": "ingest"}}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 7078, "endPort": 7079}]
    (peer,) = ingress["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": SPARK_NAMESPACE
    }


def test_priority_classes_quota_limitrange_networkpolicies(rendered_objects):
    objs = rendered_objects["platform"]
    assert set(by_kind(objs, "PriorityClass")) == {"ml-pipeline-standard", "ml-pipeline-training"}
    assert by_kind(objs, "ResourceQuota") and by_kind(objs, "LimitRange")
    policies = by_kind(objs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    namespaces = by_kind(objs, "Namespace")
    assert set(namespaces) == {STEPS_NAMESPACE, MLFLOW_NAMESPACE, SPARK_NAMESPACE}
    for name, ns in namespaces.items():
        for mode in ("enforce", "warn", "audit"):
            assert ns["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == "restricted", (
                name
            )


def test_mlflow_admits_only_the_steps_that_call_it(rendered_objects):
    """MLflow in its own namespace, default deny there; its API only from the step pods with a
    registry role (STEP_ROLES, the code's one list of the steps that call MLflow) and the registry's
    provisioning Job: not ingest, validate, publish or a model's own steps, not Spark executors,
    not Airflow. The steps' own egress to MLflow is limited to the same steps."""
    policies = [o for o in rendered_objects["platform"] if o["kind"] == "NetworkPolicy"]
    in_mlflow = {p["metadata"]["name"]: p["spec"] for p in policies
                 if p["metadata"]["namespace"] == MLFLOW_NAMESPACE}  # fmt: skip
    assert in_mlflow["default-deny"]["podSelector"] == {}
    (ingress,) = in_mlflow["mlflow"]["ingress"]
    admitted, same_namespace = set(), []
    for peer in ingress["from"]:
        if "namespaceSelector" not in peer:  # a peer in MLflow's own namespace
            same_namespace.append(peer["podSelector"]["matchLabels"])
            continue
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": STEPS_NAMESPACE
        }
        (expr,) = peer["podSelector"]["matchExpressions"]
        assert expr["operator"] == "In" and expr["key"] == "mlops.io/step"
        admitted |= set(expr["values"])
    assert admitted == set(STEP_ROLES)
    assert same_namespace == [{"app.kubernetes.io/name": "mlflow-registry-admin"}]
    job = by_kind(rendered_objects["mlflow"], "Job")["mlflow-registry-provisioning"]
    assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == (
        "mlflow-registry-admin"
    )
    in_steps = {p["metadata"]["name"]: p["spec"] for p in policies
                if p["metadata"]["namespace"] == STEPS_NAMESPACE}  # fmt: skip
    (expr,) = in_steps["steps-to-mlflow"]["podSelector"]["matchExpressions"]
    assert (expr["key"], expr["operator"], set(expr["values"])) == (
        "mlops.io/step", "In", set(STEP_ROLES)
    )  # fmt: skip
    for name, spec in in_steps.items():  # no other policy lets a step reach MLflow
        if name != "steps-to-mlflow":
            for rule in spec.get("egress") or []:
                assert all(
                    (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get(
                        "kubernetes.io/metadata.name") != MLFLOW_NAMESPACE
                    for peer in rule.get("to") or []
                ), name  # fmt: skip


def test_step_env_configmap_has_exactly_the_agreed_keys(rendered_objects):
    cm = by_kind(rendered_objects["platform"], "ConfigMap")["step-env"]
    assert cm["metadata"]["namespace"] == STEPS_NAMESPACE
    assert set(cm["data"]) == {
        "LAKE_URI",
        "MLFLOW_TRACKING_URI",
        "SCORES_URI",
        "AWS_REGION",
        "CRM_BASE_URL",
        "MLOPS_PUSHGATEWAY_URL",  # model_steps.metrics.ENV_PUSHGATEWAY_URL
    }


# ---- MLflow chart ------------------------------------------------------------------------------


def test_mlflow_server_non_root_probes_secret_backend_s3_artifacts(rendered_objects):
    objs = rendered_objects["mlflow"]
    sa = by_kind(objs, "ServiceAccount")["mlflow"]
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]
    deploy = by_kind(objs, "Deployment")["mlflow"]
    pod = deploy["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mlflow"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert "@sha256:" in container["image"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    assert "--serve-artifacts" in container["args"]
    assert any(a.startswith("--artifacts-destination=s3://") for a in container["args"])
    assert not any("backend-store-uri" in a for a in container["args"]), (
        "password stays out of argv"
    )
    # the basic-auth app, its config (users database URI) and keys from the auth Secret only
    assert "--app-name=basic-auth" in container["args"]
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-auth", name
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth-config"]["secret"]["secretName"] == "mlflow-auth"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["auth-config"]["readOnly"] is True
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"].startswith(mounts["auth-config"]["mountPath"])


def test_mlflow_chart_refuses_an_image_without_digest():
    proc = run(
        [
            tool("helm"),
            "template",
            "mlflow",
            str(HELM_DIR / "mlflow"),
            "--set",
            "image.digest=latest",
        ]
    )
    assert proc.returncode != 0 and "image.digest" in proc.stderr


# ---- Airflow: the official chart rendered with helm/airflow/values.yaml is checked in
# test_delivery_airflow_chart.py (it needs the vendored chart).


def test_chart_pods_meet_pod_security_restricted(rendered_objects):
    """The namespaces enforce `restricted`: MLflow's pods and the Spark executor template pass it."""
    deploy = by_kind(rendered_objects["mlflow"], "Deployment")["mlflow"]
    assert not restricted_violations(deploy["spec"]["template"]["spec"])
    template = yaml.safe_load(
        by_kind(rendered_objects["platform"], "ConfigMap")["spark-executor-pod-template"]["data"][
            "executor-pod-template.yaml"
        ]
    )
    assert not restricted_violations(template["spec"])
