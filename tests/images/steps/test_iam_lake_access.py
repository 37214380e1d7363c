"""The step roles' IAM policies, as Terraform renders them, against the S3 accesses the steps make.

terraform/modules/step_policy renders each step kind's policy from the lake's one zone definition
(mlplatform_contract.layout.ZONES, written to plugins/mlplatform_contract/lake_zones.json by
tools/lake_zones_json.py). This test renders it with `terraform apply` (no
provider, offline) and evaluates it with moto's IAM enforcement (an IAM user per step kind carrying
the rendered policy; every S3 call signed with its keys): every access a step makes must be allowed,
every write into a zone another kind owns must be denied (the gate's decision above all), and every
write prefix a role grants must be used by some step of that kind.

The accesses come from the step code's own path functions and zone constants, on the cluster's URIs
(helm/platform values stepEnv: LAKE_URI = s3://<lake bucket>/lake, SCORES_URI = s3://<scores>/scores).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml

from mlmodels.next_spend.report import REPORT_ZONE
from mlplatform_contract import layout
from mlplatform_contract.layout import PUBLISH as PUBLISH_ZONE
from model_steps import champion, profile
from model_steps.campaign import CAMPAIGN_ZONE
from model_steps.checkpoints import STATE, TENSORS, Checkpoints
from model_steps.contract import StepContext, run_key
from model_steps.features import FEATURES, POPULATION
from model_steps.monitor_report import MONITOR_ZONE
from model_steps.raw_schema import raw_table_root
from model_steps.scoring import scores_table_uri
from model_steps.steps.publish import PROGRESS_FILE

REPO = Path(__file__).resolve().parents[3]
MODULE = REPO / "terraform" / "modules" / "step_policy"
KINDS = ("ingest", "validate", "train", "evaluate", "score", "publish")
ACCOUNT = "123456789012"
BUCKETS = {b: f"mlops-{b}-{ACCOUNT}" for b in ("lake", "artifacts", "scores", "logs")}
KMS_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/00000000-0000-0000-0000-000000000000"
RUN = "scheduled__2026-06-29T00:00:00+00:00"
PAST = "scheduled__2026-05-31T00:00:00+00:00"


@dataclass(frozen=True)
class Access:
    kind: str
    op: str  # get | put | delete | list
    uri: str  # s3://bucket/key (list: the prefix)

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.uri.removeprefix("s3://").split("/", 1)[1]


def cluster_env() -> dict[str, str]:
    """LAKE_URI and SCORES_URI as the chart gives them to every step pod (buckets filled in)."""
    env = yaml.safe_load((REPO / "helm" / "platform" / "values.yaml").read_text())["stepEnv"]
    fill = {f"REPLACE_ME-{b}": name for b, name in BUCKETS.items()}

    def filled(uri: str) -> str:
        for placeholder, name in fill.items():
            uri = uri.replace(placeholder, name)
        return uri

    return {"LAKE_URI": filled(env["lakeUri"]), "SCORES_URI": filled(env["scoresUri"])}


def ctx(step: str) -> StepContext:
    return StepContext(
        step=step,
        pipeline="next_spend",
        customer="acme-foods",
        run_id=RUN,
        data_date=dt.date(2026, 6, 29),
        env=cluster_env(),
    )


def committed(kind: str, table_uri: str) -> list[Access]:
    """The lake's commit protocol on one table: parts under a new attempt, the manifest last, a
    retry's older attempts removed (model_steps.lake.commit_parquet_table, ingest, score)."""
    return [
        Access(kind, "put", f"{table_uri}/attempt=20260629T000000-ab12/part-00000.parquet"),
        Access(kind, "put", f"{table_uri}/_MANIFEST.json"),
        Access(kind, "list", f"{table_uri}/"),
        Access(kind, "delete", f"{table_uri}/attempt=20260628T000000-cd34/part-00000.parquet"),
    ]


def read_table(kind: str, table_uri: str) -> list[Access]:
    return [
        Access(kind, "get", f"{table_uri}/_MANIFEST.json"),
        Access(kind, "get", f"{table_uri}/attempt=20260629T000000-ab12/part-00000.parquet"),
    ]


def ingest_accesses() -> list[Access]:
    c = ctx("ingest")
    raw = raw_table_root(c.lake_uri, c.customer, "orders")
    out = [
        Access("ingest", "list", f"{raw}/"),
        Access("ingest", "get", f"{raw}/dt=2026-06-29/o.csv"),
    ]
    return (
        out
        + committed("ingest", c.lake_path(FEATURES))
        + committed("ingest", c.lake_path(POPULATION))
    )


def monitor_accesses() -> list[Access]:
    """The monitoring DAG's step, in ingest's account (mlplatform.steps.MONITOR_RUNS_IN)."""
    c, past = ctx("monitor"), run_key(PAST)
    return [
        *read_table("ingest", scores_table_uri(c, past)),
        Access("ingest", "list", scores_table_uri(c, past).rsplit("/", 1)[0] + "/"),
        *read_table("ingest", c.run_path(CAMPAIGN_ZONE, past)),
        *committed("ingest", c.run_path(MONITOR_ZONE, past)),
        Access("ingest", "put", f"{c.customer_path(MONITOR_ZONE)}/report/index.html"),
        Access("ingest", "put", f"{c.customer_path(MONITOR_ZONE)}/report/trend.png"),
        # the campaign variants' posterior state (model_steps.campaign_loop.fold)
        Access("ingest", "get", c.layout.customer.campaign_policy("spring", "latest.json")),
        Access("ingest", "put", c.layout.customer.campaign_policy("spring", f"state-{past}.json")),
        Access("ingest", "put", c.layout.customer.campaign_policy("spring", "latest.json")),
    ]


def validate_accesses() -> list[Access]:
    c = ctx("validate")
    args = (c.lake_uri, c.pipeline, c.customer)
    out_uri = c.lake_path(
        "validation"
    )  # model_steps/steps/validate.py: ctx.lake_path("validation")
    return [
        *read_table("validate", c.lake_path(FEATURES)),
        *read_table("validate", c.lake_path(POPULATION)),
        Access("validate", "get", profile.champion_profile_uri(*args)),
        Access("validate", "get", profile.last_population_profile_uri(*args)),
        Access("validate", "put", f"{out_uri}/summary.json"),
        Access("validate", "put", f"{out_uri}/data_docs/index.html"),
        Access("validate", "put", f"{out_uri}/_MANIFEST.json"),
        Access("validate", "put", profile.last_population_profile_uri(*args)),
        Access("validate", "put", profile.baseline_profile_uri(*args)),
    ]


def train_accesses() -> list[Access]:
    c = ctx("train")
    run_dir = c.lake_path("models")  # model_steps/steps/train.py: ctx.lake_path("models")
    checkpoints = Checkpoints(run_dir)  # the Keras loop's and a single-process fit's
    trial = c.lake_path("models", "trials", "t00")
    return [
        *read_table("train", c.lake_path(FEATURES)),
        Access("train", "put", f"{run_dir}/mlflow_run.json"),
        Access("train", "put", f"{checkpoints.uri}/epoch=0003/{TENSORS}"),
        Access("train", "put", checkpoints.latest_uri),
        Access("train", "get", checkpoints.latest_uri),
        Access("train", "list", f"{checkpoints.uri}/"),
        Access("train", "get", f"{checkpoints.uri}/epoch=0003/{STATE}"),
        Access("train", "delete", f"{checkpoints.uri}/epoch=0001/ckpt.index"),
        Access("train", "put", f"{Checkpoints(trial).uri}/epoch=0002/{TENSORS}"),
        Access("train", "put", f"{run_dir}/feature_profile.json"),
        Access("train", "put", f"{run_dir}/train_result.json"),
        Access("train", "put", f"{trial}/mlflow_run.json"),
        # the tuning stage (tune, halve, select) runs as train
        Access("train", "put", c.layout.tuning("plan.json")),
        Access("train", "get", c.layout.tuning("plan.json")),
    ]


def evaluate_accesses() -> list[Access]:
    c = ctx("evaluate")
    out_uri = c.lake_path(
        "evaluation"
    )  # model_steps/steps/evaluate.py: ctx.lake_path("evaluation")
    args = (c.lake_uri, c.pipeline, c.customer)
    return [
        Access("evaluate", "get", f"{c.lake_path('models')}/train_result.json"),
        Access("evaluate", "get", f"{out_uri}/decision.json"),
        Access("evaluate", "put", f"{out_uri}/report/index.html"),
        Access("evaluate", "put", f"{out_uri}/decision.json"),
        Access("evaluate", "get", f"{c.lake_path('validation')}/feature_profile.json"),
        Access("evaluate", "put", profile.champion_profile_uri(*args)),
        # the audit of champion moves (model_steps.champion): one object per move, listed to read
        Access("evaluate", "get", champion.event_uri(c.layout.customer, c.run_key, "3")),
        Access("evaluate", "put", champion.event_uri(c.layout.customer, c.run_key, "3")),
    ]


def score_accesses() -> list[Access]:
    c = ctx("score")
    report = c.lake_path(REPORT_ZONE, "spend_report")  # next_spend's own step, runs_in score
    return [
        *read_table("score", c.lake_path(POPULATION)),
        *committed("score", scores_table_uri(c)),
        Access("score", "put", f"{report}/summary.json"),
        Access("score", "put", f"{report}/_MANIFEST.json"),
    ]


def publish_accesses() -> list[Access]:
    c = ctx("publish")
    progress = c.lake_path(PUBLISH_ZONE, PROGRESS_FILE)
    return [
        *read_table("publish", scores_table_uri(c)),
        Access("publish", "get", progress),
        Access("publish", "put", progress),
        *committed("publish", c.lake_path(CAMPAIGN_ZONE)),
        # variants: the segment column from the population, the policy state the monitor learned
        *read_table("publish", c.lake_path(POPULATION)),
        Access("publish", "get", c.layout.customer.campaign_policy("spring", "latest.json")),
        Access("publish", "get", c.layout.customer.campaign_policy("spring", "state-r1.json")),
        *claim_accesses(c),
    ]


def claim_accesses(c: StepContext) -> list[Access]:
    """The day's contact claims shared by the customer's pipelines (model_steps.contact_claims):
    the candidates committed, slots and decisions listed, created and read, a lost race removed."""
    day = c.layout.customer.contact_claims(c.data_date.isoformat())
    decided = f"{day}/decisions/slot=000002/ab12cd34ef56.parquet"
    return [
        *committed("publish", f"{day}/candidates/{c.pipeline}/campaign=spring/run={c.run_key}"),
        *read_table("publish", f"{day}/candidates/customer_propensity/campaign=winback/run=r1"),
        Access("publish", "list", f"{day}/"),
        Access("publish", "get", f"{day}/claim-000001.json"),
        Access("publish", "put", f"{day}/claim-000002.json"),
        Access("publish", "get", f"{day}/decision-000001.json"),
        Access("publish", "get", f"{day}/decisions/slot=000001/0a1b2c3d4e5f.parquet"),
        Access("publish", "put", decided),
        Access("publish", "put", f"{day}/decision-000002.json"),
        Access("publish", "delete", decided),
    ]


STEP_ACCESSES: tuple[Callable[[], list[Access]], ...] = (
    ingest_accesses,
    monitor_accesses,
    validate_accesses,
    train_accesses,
    evaluate_accesses,
    score_accesses,
    publish_accesses,
)


def accesses() -> list[Access]:
    return [a for make in STEP_ACCESSES for a in make()]


def cross_zone_writes() -> list[Access]:
    """A write into every zone by every kind that is not one of its writers: all must be denied."""
    c = ctx("attacker")
    out = []
    for zone in layout.ZONES.values():
        root = f"s3://{BUCKETS[zone.bucket]}/{zone.prefix}"
        key = f"{root}next_spend/customer=acme-foods/run={c.run_key}/decision.json"
        out += [Access(k, "put", key) for k in KINDS if k not in zone.writers]
    return out


# ---- rendering and evaluating ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """{kind: policy document} as `terraform apply` renders terraform/modules/step_policy."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.fail("terraform is not on PATH (CI: sh ci/install-terraform.sh)")
    root = tmp_path_factory.mktemp("step-policy")
    arns = {b: f"arn:aws:s3:::{name}" for b, name in BUCKETS.items()}
    (root / "main.tf").write_text(
        f'module "p" {{\n  source = "{os.path.relpath(MODULE, root)}"\n'
        f"  step_kinds = {json.dumps(list(KINDS))}\n"
        f"  bucket_arns = {json.dumps(arns)}\n  kms_key_arn = {json.dumps(KMS_ARN)}\n}}\n"
        'output "policies" { value = module.p.policies }\n'
    )
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": "/dev/null"}
    for cmd in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        proc = subprocess.run(
            [terraform, *cmd, "-no-color"], cwd=root, env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run(
        [terraform, "output", "-json", "policies"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return {kind: json.loads(doc) for kind, doc in json.loads(out.stdout).items()}


def evaluate(policies: dict[str, dict], tried: list[Access]) -> dict[Access, bool]:
    """Each access, signed as an IAM user carrying its kind's policy, against moto's S3 with IAM
    enforcement on: {access: allowed}."""
    from moto import mock_aws
    from moto.core import set_initial_no_auth_action_count

    @set_initial_no_auth_action_count(3)  # the admin user, its policy and its key
    @mock_aws
    def run() -> dict[Access, bool]:
        admin = _client_for("admin", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": "*"}
        ]}, None)  # fmt: skip
        for name in BUCKETS.values():
            admin["s3"].create_bucket(
                Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
            )
        for a in tried:  # every object a read or delete touches exists
            if a.op in ("get", "delete"):
                admin["s3"].put_object(Bucket=a.bucket, Key=a.key, Body=b"{}")
        clients = {k: _client_for(k, policies[k], admin["iam"])["s3"] for k in policies}
        return {a: _try(clients[a.kind], a) for a in tried}

    # botocore follows AWS_ENDPOINT_URL past moto's mock: a real endpoint in the environment (the
    # embedded services') would answer without IAM, and every access would pass
    with mock.patch.dict(os.environ):
        os.environ.pop("AWS_ENDPOINT_URL", None)
        return run()


def _client_for(name: str, policy: dict, iam) -> dict:
    import boto3

    region = {"region_name": "eu-west-1"}
    iam = iam or boto3.client("iam", **region)
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    creds = {
        "aws_access_key_id": key["AccessKeyId"],
        "aws_secret_access_key": key["SecretAccessKey"],
    }
    return {
        "s3": boto3.client("s3", **region, **creds),
        "iam": boto3.client("iam", **region, **creds),
    }


def _try(s3, a: Access) -> bool:
    from botocore.exceptions import ClientError

    try:
        if a.op == "put":
            s3.put_object(Bucket=a.bucket, Key=a.key, Body=b"{}")
        elif a.op == "get":
            s3.get_object(Bucket=a.bucket, Key=a.key)
        elif a.op == "delete":
            s3.delete_object(Bucket=a.bucket, Key=a.key)
        else:
            s3.list_objects_v2(Bucket=a.bucket, Prefix=a.key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "AccessDenied":
            return False
        raise
    return True


@pytest.fixture(scope="module", autouse=True)
def _fake_credentials():
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def verdicts(rendered) -> dict[Access, bool]:
    return evaluate(rendered, accesses() + cross_zone_writes())


def write_resources(policy: dict) -> list[str]:
    return [r for s in policy["Statement"] if "s3:PutObject" in s["Action"] for r in s["Resource"]]


# ---- the checks --------------------------------------------------------------------------------


def test_every_access_a_step_makes_is_allowed_under_its_own_role(verdicts):
    denied = [a for a in accesses() if not verdicts[a]]
    assert not denied, "denied under the step's own role:\n" + "\n".join(map(str, denied))


def test_every_cross_zone_write_is_denied(verdicts):
    allowed = [a for a in cross_zone_writes() if verdicts[a]]
    assert not allowed, "a kind may write a zone it does not own:\n" + "\n".join(map(str, allowed))


def test_only_evaluate_can_write_the_gates_decision(rendered):
    decision = f"{ctx('evaluate').lake_path('evaluation')}/decision.json"
    verdicts = evaluate(rendered, [Access(k, "put", decision) for k in KINDS])
    assert {a.kind for a, allowed in verdicts.items() if allowed} == {"evaluate"}
    # nor the history of champion moves (who moved it, from and to which version, why)
    event = champion.event_uri(ctx("evaluate").layout.customer, "run=x", "9")
    verdicts = evaluate(rendered, [Access(k, "put", event) for k in KINDS])
    assert {a.kind for a, allowed in verdicts.items() if allowed} == {"evaluate"}


def test_every_granted_write_prefix_is_used_by_a_step_of_that_kind(rendered):
    for kind, policy in rendered.items():
        writes = [a for a in accesses() if a.kind == kind and a.op in ("put", "delete")]
        for resource in write_resources(policy):
            used = [
                a
                for a in writes
                if fnmatch.fnmatchcase(f"arn:aws:s3:::{a.bucket}/{a.key}", resource)
            ]
            assert used, f"{kind}'s role grants {resource}, which no {kind} step writes"


def test_every_readable_bucket_is_read_by_a_step_of_that_kind(rendered):
    for kind, policy in rendered.items():
        read = {a.bucket for a in accesses() if a.kind == kind}
        for s in policy["Statement"]:
            if s["Sid"] == "ReadObjects":
                for resource in s["Resource"]:
                    bucket = resource.removeprefix("arn:aws:s3:::").removesuffix("/*")
                    assert bucket in read, f"{kind} may read {bucket}, which no {kind} step reads"


def test_a_prefix_without_the_lake_root_fails_the_check(rendered):
    """The evaluator is not vacuous: the old grants (no `lake/` in the key prefix) deny the steps."""
    broken = json.loads(json.dumps(rendered).replace("/lake/", "/"))
    tried = [a for a in accesses() if a.kind == "ingest" and a.op == "put"]
    verdicts = evaluate(broken, tried)
    assert tried and not any(verdicts.values())


def test_the_chart_uris_use_the_zone_definition_roots():
    env, roots = cluster_env(), layout.ROOTS
    assert env["LAKE_URI"] == f"s3://{BUCKETS['lake']}/{roots['lake']}"
    assert env["SCORES_URI"] == f"s3://{BUCKETS['scores']}/{roots['scores']}"
    assert layout.ZONES["scores"].prefix == f"{roots['scores']}/"
    for z in layout.ZONES.values():
        if z.bucket == "lake":
            assert z.prefix == f"{roots['lake']}/{z.name}/", z


def test_the_code_uses_only_zones_of_the_definition():
    used = {a.key.split("/")[1] for a in accesses() if a.bucket == BUCKETS["lake"]}
    assert used <= set(layout.ZONES), used - set(layout.ZONES)
    for name in (FEATURES, POPULATION, CAMPAIGN_ZONE, MONITOR_ZONE, PUBLISH_ZONE, REPORT_ZONE):
        layout.known_zone(name)


def test_no_wildcard_action_and_every_write_is_under_a_zone_prefix(rendered):
    prefixes = {f"arn:aws:s3:::{BUCKETS[z.bucket]}/{z.prefix}*" for z in layout.ZONES.values()}
    for kind, policy in rendered.items():
        for s in policy["Statement"]:
            assert not any(a == "*" or a.endswith(":*") for a in s["Action"]), (kind, s)
        assert set(write_resources(policy)) <= prefixes, kind
