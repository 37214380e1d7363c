"""Terraform: formatting, checkov, and invariants read from the parsed HCL (python-hcl2)."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from delivery_helpers import (
    AIRFLOW_COMPONENTS,
    AIRFLOW_NAMESPACE,
    HCL2_LIB,
    REPO,
    STEP_KINDS,
    STEPS_NAMESPACE,
    airflow_service_account,
    assert_checkov_clean,
    checkov,
    output_of,
    report,
    run,
    tool,
)

TF = REPO / "terraform"
PLATFORM = "modules/platform"


@pytest.fixture(scope="module")
def hcl() -> dict:
    """{relative .tf path: parsed HCL} for every file under terraform/."""
    if not (HCL2_LIB / "hcl2").is_dir():
        pytest.fail(f"python-hcl2 missing at {HCL2_LIB}: run `make delivery-tools`")
    proc = run(
        [tool("python"), str(REPO / "tests" / "delivery" / "hcl_dump.py"), str(TF)],
        env={"PYTHONPATH": str(HCL2_LIB)},
    )
    assert proc.returncode == 0, output_of(proc)
    return json.loads(proc.stdout)


def blocks(hcl: dict, kind: str, type_: str | None = None) -> dict[str, dict]:
    """All `kind` blocks ("resource", "data", "module") as {"<file>::<type>.<name>": body}."""
    found = {}
    for path, doc in hcl.items():
        for entry in doc.get(kind, []):
            if kind in ("module", "variable"):
                for name, body in entry.items():
                    found[f"{path}::{name}"] = body
                continue
            for t, named in entry.items():
                if type_ is not None and t != type_:
                    continue
                for name, body in named.items():
                    found[f"{path}::{t}.{name}"] = body
    return found


def one(found: dict[str, dict], key_suffix: str) -> dict:
    matches = [v for k, v in found.items() if k.endswith(key_suffix)]
    assert len(matches) == 1, f"expected one block ending {key_suffix!r}, got {list(found)}"
    return matches[0]


def first(block_list):
    return block_list[0] if isinstance(block_list, list) else block_list


def test_terraform_fmt_check():
    proc = run([tool("terraform"), "fmt", "-check", "-recursive", "-diff", str(TF)])
    assert proc.returncode == 0, output_of(proc)


def test_checkov_terraform_clean():
    summary = checkov(["-d", str(TF)], "terraform")
    report("terraform", summary)
    assert_checkov_clean(summary, min_passed=200)


# ---- node groups --------------------------------------------------------------------------------


def node_groups(hcl) -> dict:
    eks = one(blocks(hcl, "module"), f"{PLATFORM}/eks.tf::eks")
    assert eks["source"] == "terraform-aws-modules/eks/aws"
    assert re.fullmatch(r"\d+\.\d+\.\d+", eks["version"]), "pin the EKS module to an exact version"
    return eks["eks_managed_node_groups"]


def test_node_groups_system_cpu_gpu_with_pool_labels(hcl):
    groups = node_groups(hcl)
    assert set(groups) == {"system", "cpu", "gpu"}
    for name, group in groups.items():
        assert group["labels"]["mlops.io/node-pool"] == name


def test_gpu_node_group_tainted_labelled_and_scales_from_zero(hcl):
    gpu = node_groups(hcl)["gpu"]
    taints = list(gpu["taints"].values())
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"} in taints
    assert gpu["min_size"] == 0 and gpu["desired_size"] == 0
    assert "NVIDIA" in gpu["ami_type"]
    tags = gpu["tags"]
    assert tags["k8s.io/cluster-autoscaler/node-template/taint/nvidia.com/gpu"] == "true:NoSchedule"
    assert tags["k8s.io/cluster-autoscaler/node-template/label/mlops.io/node-pool"] == "gpu"


def test_system_group_on_demand_and_cpu_group_may_be_spot(hcl):
    groups = node_groups(hcl)
    assert groups["system"]["capacity_type"] == "ON_DEMAND"
    assert groups["cpu"]["capacity_type"] == "${var.cpu_capacity_type}"
    variables = {k.split("::")[1]: v for k, v in blocks(hcl, "variable").items()}
    assert variables["cpu_capacity_type"]["default"] == "SPOT"


def test_nodes_enforce_imdsv2_and_encrypted_volumes(hcl):
    eks = one(blocks(hcl, "module"), f"{PLATFORM}/eks.tf::eks")
    defaults = eks["eks_managed_node_group_defaults"]
    assert defaults["metadata_options"]["http_tokens"] == "required"
    assert defaults["metadata_options"]["http_put_response_hop_limit"] == 1
    assert defaults["block_device_mappings"]["xvda"]["ebs"]["encrypted"] is True
    assert eks["enable_irsa"] is True


# ---- buckets -------------------------------------------------------------------------------------


def test_platform_buckets_use_the_bucket_module_with_kms(hcl):
    modules = {
        k.split("::")[1]: v for k, v in blocks(hcl, "module").items() if k.startswith(PLATFORM)
    }
    for purpose in ("lake", "artifacts", "scores", "logs"):
        body = modules[f"bucket_{purpose}"]
        assert body["source"] == "../bucket"
        assert body["purpose"] == purpose
        assert body["kms_key_arn"] == "${aws_kms_key.platform.arn}"


def test_bucket_module_encrypted_versioned_private_with_lifecycle(hcl):
    res = {
        k.split("::")[1]: v
        for k, v in blocks(hcl, "resource").items()
        if k.startswith("modules/bucket")
    }
    sse = first(res["aws_s3_bucket_server_side_encryption_configuration.this"]["rule"])
    assert first(sse["apply_server_side_encryption_by_default"])["sse_algorithm"] == "aws:kms"
    assert (
        first(res["aws_s3_bucket_versioning.this"]["versioning_configuration"])["status"]
        == "Enabled"
    )
    pab = res["aws_s3_bucket_public_access_block.this"]
    for flag in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert pab[flag] is True, flag
    assert (
        first(res["aws_s3_bucket_ownership_controls.this"]["rule"])["object_ownership"]
        == "BucketOwnerEnforced"
    )
    assert res["aws_s3_bucket_lifecycle_configuration.this"]["rule"], "lifecycle rules"
    assert "aws_s3_bucket_logging.this" in res


def test_every_bucket_in_the_tree_is_encrypted_and_blocks_public_access(hcl):
    res = blocks(hcl, "resource")
    buckets = {
        k
        for k in res
        if ".aws_s3_bucket." in "." + k.split("::")[1]
        or k.split("::")[1].startswith("aws_s3_bucket.")
    }
    assert buckets, "no buckets found"
    for key in buckets:
        path, addr = key.split("::")
        name = addr.split(".", 1)[1]
        same_file = {k.split("::")[1] for k in res if k.startswith(path + "::")}
        assert f"aws_s3_bucket_server_side_encryption_configuration.{name}" in same_file, key
        assert f"aws_s3_bucket_public_access_block.{name}" in same_file, key
        assert f"aws_s3_bucket_versioning.{name}" in same_file, key
        assert f"aws_s3_bucket_lifecycle_configuration.{name}" in same_file, key
    for key, body in res.items():
        if key.split("::")[1].startswith("aws_s3_bucket_acl."):
            assert "public" not in str(body.get("acl", "")), key


def test_no_bucket_policy_allows_everyone(hcl):
    for key, body in blocks(hcl, "data", "aws_iam_policy_document").items():
        for st in body.get("statement", []):
            principals = st.get("principals", [])
            if st.get("effect", "Allow") == "Allow":
                for p in principals:
                    assert "*" not in p.get("identifiers", []), f"{key}: Allow to principal *"


# ---- IAM -----------------------------------------------------------------------------------------


def all_statements(hcl):
    """(where, statement) for every aws_iam_policy_document statement, dynamic ones included."""
    for key, body in blocks(hcl, "data", "aws_iam_policy_document").items():
        for st in body.get("statement", []):
            yield key, st
        for dyn in body.get("dynamic", []):
            for content in dyn.get("statement", {}).get("content", []):
                yield key, content


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_no_wildcard_actions_on_wildcard_resources(hcl):
    offenders = []
    for key, st in all_statements(hcl):
        if st.get("effect", "Allow") != "Allow":
            continue
        actions = as_list(st.get("actions", []))
        resources = as_list(st.get("resources", []))
        for action in actions:
            if action == "*" or action.endswith(":*"):
                offenders.append(f"{key} {st.get('sid')}: action {action}")
        if "*" in resources and any("*" in a for a in actions):
            offenders.append(f"{key} {st.get('sid')}: wildcard actions {actions} on resource *")
    assert not offenders, offenders


def test_resource_star_only_where_aws_cannot_scope(hcl):
    """Resource "*" only in the KMS key policy (where it means the key), ecr:GetAuthorizationToken and
    the autoscaler's read-only Describe calls: places where AWS offers no resource to scope to."""
    allowed = {
        ("kms.tf", "AccountAdministersKey"),
        ("kms.tf", "AccountIamPoliciesMayUseKey"),
        ("ci_oidc.tf", "EcrLogin"),
        ("iam.tf", "DescribeScalingInputs"),
    }
    for key, st in all_statements(hcl):
        if st.get("effect", "Allow") == "Allow" and "*" in as_list(st.get("resources", [])):
            where = (key.split("::")[0].rsplit("/", 1)[-1], st.get("sid"))
            assert where in allowed, f"{key}: resource * in statement {st.get('sid')}"
            if where[1] == "EcrLogin":
                assert as_list(st["actions"]) == ["ecr:GetAuthorizationToken"]
            if where[1] == "DescribeScalingInputs":
                read_only = ("Describe", "Get")
                assert all(a.split(":")[1].startswith(read_only) for a in st["actions"]), st[
                    "actions"
                ]


def test_inline_json_policies_have_no_wildcard_action(hcl):
    for key, body in blocks(hcl, "resource").items():
        for attr in ("policy", "assume_role_policy"):
            text = str(body.get(attr, ""))
            assert not re.search(r'Action\s*=\s*"\*"|Action\s*=\s*\[\s*"\*"', text), f"{key}.{attr}"
        if key.split("::")[1].startswith("aws_iam_role_policy_attachment."):
            assert "AdministratorAccess" not in str(body.get("policy_arn")), key


def test_irsa_roles_for_each_step_kind_mlflow_and_airflow(hcl):
    variables = {
        k.split("::")[1]: v for k, v in blocks(hcl, "variable").items() if k.startswith(PLATFORM)
    }
    assert variables["step_kinds"]["default"] == list(STEP_KINDS)
    assert variables["steps_namespace"]["default"] == STEPS_NAMESPACE
    assert variables["airflow_namespace"]["default"] == AIRFLOW_NAMESPACE
    locals_ = {}
    for doc in hcl.values():
        for entry in doc.get("locals", []):
            locals_.update(entry)
    assert (
        locals_["step_service_accounts"]
        == '${{for kind in var.step_kinds : kind => "step-${kind}"}}'
    )
    roles = locals_["irsa_roles"]
    assert "mlflow" in roles and "airflow" in roles and "${var.mlflow_namespace}:mlflow" in roles
    assert "${var.spark_namespace}:spark-executor" in roles
    # Each step kind's policy comes from the lake's zone definition (terraform/modules/step_policy);
    # tests/images/steps/test_iam_lake_access.py renders it and evaluates it against the steps' accesses.
    step_policy = one(blocks(hcl, "module"), f"{PLATFORM}/iam.tf::step_policy")
    assert step_policy["source"] == "../step_policy"
    assert step_policy["step_kinds"] == "${var.step_kinds}"
    assert "module.step_policy.policies[kind]" in roles
    module = hcl["modules/step_policy/main.tf"]["locals"][0]
    assert "plugins/mlplatform_contract/lake_zones.json" in module["layout"]


REGISTRY_SECRET_ROLES = {
    # the registry's provisioning Job writes the identities, External Secrets reads them
    "registry_admin": {"secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
                       "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret",
                       "secretsmanager:TagResource"},
    "registry_identities": {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"},
}  # fmt: skip


def test_no_workload_role_reads_the_database_master_secret(hcl):
    """MLflow reads its database password from the Kubernetes Secret mlflow-db, never from Secrets
    Manager: no policy names the RDS master secret, and Secrets Manager appears only in the two
    registry roles, on the identities' prefix only (not the MLflow admin's secret, not the master)."""
    for where, statement in all_statements(hcl):
        actions = set(map(str, statement.get("actions", [])))
        assert "master_user_secret" not in str(statement.get("resources")), where
        if not any(a.startswith("secretsmanager:") for a in actions):
            continue
        policy = where.split("::")[1].removeprefix("aws_iam_policy_document.")
        assert actions == REGISTRY_SECRET_ROLES.get(policy), where
        assert statement["resources"] == ["${local.registry_identities_arn}"], where


def test_registry_roles_trust_the_charts_service_accounts_and_one_prefix(hcl):
    """The IRSA subjects are the accounts the charts create (the provisioning Job's in MLflow's
    namespace, External Secrets' store account in its own), and the prefix is the one both charts
    are given (terraform output registry_identities_prefix)."""
    locals_ = {}
    for doc in hcl.values():
        for entry in doc.get("locals", []):
            locals_.update(entry)
    roles = locals_["irsa_roles"]
    mlflow = yaml.safe_load((REPO / "helm" / "mlflow" / "values.yaml").read_text())
    platform = yaml.safe_load((REPO / "helm" / "platform" / "values.yaml").read_text())
    job_sa = mlflow["provisioning"]["serviceAccount"]["name"]
    eso = platform["registryIdentities"]
    assert f"${{var.mlflow_namespace}}:{job_sa}" in roles
    assert f"${{var.external_secrets_namespace}}:{eso['serviceAccount']}" in roles
    assert locals_["registry_identities_prefix"] == "${var.name}/mlflow/identities"
    for prefix in (mlflow["provisioning"]["secretsPrefix"], eso["secretsPrefix"]):
        assert prefix == "REPLACE_ME/mlflow/identities"  # <name>/mlflow/identities once filled


def test_airflow_irsa_trusts_exactly_the_service_accounts_of_the_airflow_values(hcl):
    locals_ = {}
    for doc in hcl.values():
        for entry in doc.get("locals", []):
            locals_.update(entry)
    expr = locals_["airflow_service_accounts"]
    components = re.search(r"for c in \[([^\]]*)\]", expr).group(1)
    tf_names = {f"airflow-{c.strip().strip(chr(34))}" for c in components.split(",")}
    values = yaml.safe_load((REPO / "helm" / "airflow" / "values.yaml").read_text())
    chart_names = {airflow_service_account(values, c)["name"] for c in AIRFLOW_COMPONENTS}
    assert tf_names == chart_names


# ---- ECR, RDS, CI --------------------------------------------------------------------------------


def test_ecr_repositories_immutable_scanned_encrypted(hcl):
    repo = one(blocks(hcl, "resource", "aws_ecr_repository"), "aws_ecr_repository.step")
    assert repo["name"] == "mlops/${each.key}"
    assert "var.step_kinds" in repo["for_each"]
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert first(repo["image_scanning_configuration"])["scan_on_push"] is True
    assert first(repo["encryption_configuration"])["encryption_type"] == "KMS"


def test_rds_private_encrypted_with_managed_password(hcl):
    db = one(blocks(hcl, "resource", "aws_db_instance"), "aws_db_instance.metadata")
    assert db["engine"] == "postgres"
    assert db["storage_encrypted"] is True
    assert db["publicly_accessible"] is False
    assert db["manage_master_user_password"] is True
    assert "password" not in db


def test_ci_role_trusts_only_the_default_branch_of_one_project(hcl):
    trust = one(blocks(hcl, "data", "aws_iam_policy_document"), "aws_iam_policy_document.ci_trust")
    subs = [c for c in trust["statement"][0]["condition"] if c["variable"].endswith(":sub")]
    assert subs and subs[0]["test"] == "StringEquals"
    assert subs[0]["values"] == [
        "project_path:${var.gitlab_project_path}:ref_type:branch:ref:${var.gitlab_default_branch}"
    ]


def test_dev_and_prod_envs_use_the_platform_module(hcl):
    envs = {
        k.split("::")[0].split("/")[1]: v
        for k, v in blocks(hcl, "module").items()
        if k.startswith("envs/")
    }
    assert set(envs) == {"dev", "prod"}
    for env, body in envs.items():
        assert body["source"] == "../../modules/platform"
        assert body["environment"] == env
    assert envs["prod"]["db_multi_az"] is True
    assert envs["prod"]["db_deletion_protection"] is True
    assert len(envs["prod"]["azs"]) == 3
