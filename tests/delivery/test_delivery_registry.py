"""The registry's cluster side, rendered by helm, checked for what it means (docs/registry-access.md):

* the provisioning Job runs the embedded default's provisioning (model_steps.registry_admin, parsed
  by its own CLI parser), as its own account, with the admin's two keys and the CA only, for exactly
  the (pipeline, customer) pairs of the DAG modules, into the prefix External Secrets reads;
* External Secrets writes one Secret per (registry role, customer), named and keyed as the pod
  builder reads it (runtime/pods.py), from a store that serves the steps' namespace only;
* MLflow serves HTTPS with the certificate cert-manager issues for the names the steps dial, from
  the CA whose certificate trust-manager puts in the ConfigMap the step pods mount;
* the charts' defaults are what tools/registry_values.py derives from the code.

The ExternalSecret, ClusterSecretStore, Certificate, ClusterIssuer and Bundle objects were checked
once against their upstream CRDs (docs/registry-access.md); these tests hold the fields that carry
meaning.
"""

from __future__ import annotations

import importlib.util
import inspect
import shlex
from urllib.parse import urlparse

import pytest
import yaml
from delivery_helpers import (
    MLFLOW_NAMESPACE,
    REPO,
    STEPS_NAMESPACE,
    parse_charts,
    render_charts,
    restricted_violations,
)

from embedded import platform as embedded_platform
from mlplatform.runtime import pods
from mlplatform_contract.registry_access import ENV_PASSWORD, ENV_USERNAME, ROLES, username
from model_steps import registry_admin


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, list[dict]]:
    return parse_charts(render_charts(tmp_path_factory.mktemp("helm-registry")))


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    """Every (pipeline, customer) of the DAG modules: what the embedded default grants."""
    return embedded_platform.example_pipelines()


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def values(chart: str) -> dict:
    return yaml.safe_load((REPO / "helm" / chart / "values.yaml").read_text())


def job_pod(rendered) -> dict:
    return by_kind(rendered["mlflow"], "Job")["mlflow-registry-provisioning"]["spec"]["template"]


def test_the_job_runs_the_embedded_defaults_provisioning(rendered, pairs):
    """Same module as embedded.platform.grant_registry, arguments its own parser accepts, the
    DAG modules' pairs, the HTTPS URL of the Service, the prefix External Secrets reads."""
    job = by_kind(rendered["mlflow"], "Job")["mlflow-registry-provisioning"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    (container,) = job_pod(rendered)["spec"]["containers"]
    assert container["command"] == ["python", "-m", registry_admin.__name__]
    assert f'"{registry_admin.__name__}"' in inspect.getsource(embedded_platform.grant_registry)
    args = registry_admin._parser().parse_args(container["args"])
    assert args.identities is None  # the cluster keeps no file: Secrets Manager
    assert sorted(args.pipeline) == sorted(set(pairs))
    url = urlparse(args.tracking_uri)
    assert url.scheme == "https" and url.hostname == f"mlflow.{MLFLOW_NAMESPACE}.svc.cluster.local"
    assert args.secrets_prefix == values("platform")["registryIdentities"]["secretsPrefix"]
    assert "@sha256:" in container["image"]


def test_the_job_holds_the_admin_keys_and_the_ca_only(rendered):
    pod = job_pod(rendered)["spec"]
    (container,) = pod["containers"]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
            if "secretKeyRef" in (e.get("valueFrom") or {})}  # fmt: skip
    assert refs == {
        ENV_USERNAME: {"name": "mlflow-auth", "key": "admin-username"},
        ENV_PASSWORD: {"name": "mlflow-auth", "key": "admin-password"},
    }
    assert not container.get("envFrom")
    volumes = {v["name"]: v for v in pod["volumes"]}
    secrets = {n: v["secret"] for n, v in volumes.items() if "secret" in v}
    assert secrets == {"mlflow-ca": {"secretName": "mlflow-tls", "defaultMode": 0o444,
                                     "items": [{"key": "ca.crt", "path": "ca.crt"}]}}  # fmt: skip
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env[pods.ENV_MLFLOW_CA] == mounts["mlflow-ca"] + "/ca.crt"
    assert pod["automountServiceAccountToken"] is False
    assert not restricted_violations(pod)  # the mlflow namespace enforces `restricted`
    account = values("mlflow")["provisioning"]["serviceAccount"]["name"]
    assert pod["serviceAccountName"] == account != "mlflow"
    sa = by_kind(rendered["mlflow"], "ServiceAccount")[account]
    assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]


def test_one_external_secret_per_identity_keyed_as_the_pod_builder_reads(rendered, pairs):
    platform = rendered["platform"]
    prefix = values("platform")["registryIdentities"]["secretsPrefix"]
    customers = {c for _, c in pairs}
    expected = {pods.registry_secret_name(username(r, c)): username(r, c)
                for r in ROLES for c in customers}  # fmt: skip
    external = by_kind(platform, "ExternalSecret")
    assert set(external) == set(expected)
    for name, obj in external.items():
        spec, user = obj["spec"], expected[name]
        assert obj["metadata"]["namespace"] == STEPS_NAMESPACE
        assert spec["target"]["name"] == name
        assert spec["secretStoreRef"] == {
            "kind": "ClusterSecretStore",
            "name": "registry-identities",
        }
        assert {d["secretKey"]: d["remoteRef"] for d in spec["data"]} == {
            key: {"key": f"{prefix}/{user}", "property": key} for key in ("username", "password")
        }  # the JSON keys registry_admin.SecretsManagerIdentities writes
    env = pods.registry_env("score", "acme-foods")
    read = {e.value_from.secret_key_ref.key for e in env if e.value_from}
    assert read == {"username", "password"}


def test_the_store_serves_the_steps_namespace_only_as_its_own_account(rendered):
    platform, eso = rendered["platform"], values("platform")["registryIdentities"]
    store = by_kind(platform, "ClusterSecretStore")["registry-identities"]["spec"]
    assert store["conditions"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": STEPS_NAMESPACE}}}
    ]
    aws = store["provider"]["aws"]
    assert aws["service"] == "SecretsManager"
    ref = aws["auth"]["jwt"]["serviceAccountRef"]
    assert ref == {"name": eso["serviceAccount"], "namespace": eso["externalSecretsNamespace"]}
    assert eso["externalSecretsNamespace"] not in (STEPS_NAMESPACE, MLFLOW_NAMESPACE)
    (sa,) = [o for o in platform if o["kind"] == "ServiceAccount"
             and o["metadata"]["name"] == ref["name"]]  # fmt: skip
    assert sa["metadata"]["namespace"] == ref["namespace"]


def test_mlflow_serves_the_certificate_the_steps_trust(rendered):
    """Certificate (names the steps dial) -> Secret the server mounts -> uvicorn's TLS options;
    issued by the CA whose certificate trust-manager copies into the ConfigMap step pods mount."""
    mlflow, platform = rendered["mlflow"], rendered["platform"]
    cert = by_kind(mlflow, "Certificate")["mlflow"]["spec"]
    step_env = by_kind(platform, "ConfigMap")["step-env"]["data"]
    dialled = urlparse(step_env["MLFLOW_TRACKING_URI"])
    assert dialled.scheme == "https" and dialled.hostname in cert["dnsNames"]
    pod = by_kind(mlflow, "Deployment")["mlflow"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (opts,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--uvicorn-opts=")]
    ssl = dict(o.split("=", 1) for o in shlex.split(opts))
    mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["tls"]
    assert ssl == {"--ssl-certfile": f"{mount}/tls.crt", "--ssl-keyfile": f"{mount}/tls.key"}
    tls = {v["name"]: v for v in pod["volumes"]}["tls"]["secret"]
    assert tls["secretName"] == cert["secretName"]
    issuers = by_kind(platform, "ClusterIssuer")
    ca_issuer = issuers[cert["issuerRef"]["name"]]["spec"]["ca"]
    ca_cert = by_kind(platform, "Certificate")[ca_issuer["secretName"]]["spec"]
    assert ca_cert["isCA"] is True and ca_cert["secretName"] == ca_issuer["secretName"]
    bundle = by_kind(platform, "Bundle")[pods.MLFLOW_CA_CONFIGMAP]["spec"]
    assert bundle["sources"] == [{"secret": {"name": ca_cert["secretName"], "key": "ca.crt"}}]
    assert bundle["target"] == {
        "configMap": {"key": pods.MLFLOW_CA_KEY},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": STEPS_NAMESPACE}},
    }


def _registry_values():
    path = REPO / "tools" / "registry_values.py"
    spec = importlib.util.spec_from_file_location("registry_values", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _merged(default: dict, derived: dict) -> dict:
    """``default`` restricted to the keys ``derived`` sets (the derived part of the values)."""
    return {k: _merged(default[k], v) if isinstance(v, dict) else default[k]
            for k, v in derived.items()}  # fmt: skip


@pytest.mark.parametrize("chart", ["mlflow", "platform"])
def test_chart_defaults_are_what_the_code_derives(chart, pairs):
    tool = _registry_values()
    derived = (tool.mlflow_values if chart == "mlflow" else tool.platform_values)(pairs)
    assert _merged(values(chart), derived) == derived
