"""Registry security probes: an attacker holding one step's MLflow identity, on the embedded
default's real MLflow server (basic-auth app, ``default_permission = NO_PERMISSIONS``), granted by
the same provisioning the platform runs. Each probe is one call an attacker would make; the table
of probes is docs/registry-access.md's. One server and one provisioning serve every probe."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from embedded import services
from mlplatform_contract.registry_access import (
    ENV_PASSWORD,
    ENV_USERNAME,
    ROLES,
    experiment_name,
    registered_model_name,
    username,
)

pytestmark = pytest.mark.slow  # starts the MLflow server

pytest.importorskip("mlflow")

PIPELINE, MINE, OTHER = "customer_propensity", "acme-foods", "globex"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[dict[str, Any]]:
    from model_steps import registry_admin

    state = tmp_path_factory.mktemp("registry")
    info = services.up(state, timeout=120)
    saved = {k: os.environ.get(k) for k in (ENV_USERNAME, ENV_PASSWORD)}
    try:
        os.environ.update(services.admin_env(state))
        identities = state / services.AUTH_DIR / services.IDENTITIES_FILE
        pairs = [(PIPELINE, MINE), (PIPELINE, OTHER)]
        granted = registry_admin.provision(info["tracking_uri"], pairs, identities)
        again = registry_admin.provision(info["tracking_uri"], pairs, identities)
        passwords = json.loads(identities.read_text())
        passwords["admin"] = services.admin_env(state)[ENV_PASSWORD]
        yield {"uri": info["tracking_uri"], "identities": identities, "granted": granted,
               "again": again, "passwords": passwords}  # fmt: skip
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        services.down(state)


def _as(registry: dict[str, Any], user: str | None, password: str | None = None):
    """An MLflow client (and the auth app's client) logged in as ``user`` (None: anonymous)."""
    import mlflow
    from mlflow.server import get_app_client

    os.environ.pop(ENV_USERNAME, None)
    os.environ.pop(ENV_PASSWORD, None)
    if user:
        os.environ[ENV_USERNAME] = user
        os.environ[ENV_PASSWORD] = password or registry["passwords"][user]
    return mlflow.MlflowClient(registry["uri"]), get_app_client("basic-auth", registry["uri"])


def _outcome(call: Callable[[], Any]) -> str:
    from mlflow.exceptions import MlflowException

    try:
        call()
    except MlflowException as exc:
        return exc.error_code  # PERMISSION_DENIED (403) or UNAUTHENTICATED (401)
    return "allowed"


def test_provisioning_grants_the_table_and_is_idempotent(registry):
    assert registry["granted"] == registry["again"]
    for customer in (MINE, OTHER):
        for role in ROLES.values():
            user = username(role.name, customer)
            assert registry["granted"][f"{PIPELINE}/{customer}"][user] == (
                f"experiment {role.experiment}, model {role.registered_model}"
            )
    mode = stat.S_IMODE(Path(registry["identities"]).stat().st_mode)
    assert mode == 0o600, oct(mode)  # the passwords file: its owner only


def test_each_role_reaches_its_own_customer_only(registry):
    model_mine = registered_model_name(PIPELINE, MINE)
    model_other = registered_model_name(PIPELINE, OTHER)
    client, _ = _as(registry, username("trainer", MINE))
    mine = client.get_experiment_by_name(experiment_name(PIPELINE, MINE))
    run = client.create_run(mine.experiment_id)  # positive control: its own work goes through
    client.set_tag(run.info.run_id, "mlops.model_digest", "0" * 64)  # and its model's digest
    client, _ = _as(registry, username("gate", MINE))  # only the gate registers
    version = client.create_model_version(model_mine, f"runs:/{run.info.run_id}/model",
                                          run.info.run_id)  # fmt: skip
    admin, _ = _as(registry, "admin")
    other_id = admin.get_experiment_by_name(experiment_name(PIPELINE, OTHER)).experiment_id

    probes = {
        # another customer's resources, with one customer's trainer identity
        "trainer reads the other customer's experiment": (
            username("trainer", MINE),
            lambda c, a: c.get_experiment(other_id),
        ),
        "trainer logs a run into the other customer's experiment": (
            username("trainer", MINE),
            lambda c, a: c.create_run(other_id),
        ),
        "trainer reads the other customer's model": (
            username("trainer", MINE),
            lambda c, a: c.get_registered_model(model_other),
        ),
        "trainer registers a version under the other customer's model": (
            username("trainer", MINE),
            lambda c, a: c.create_model_version(model_other, "runs:/x/model", run.info.run_id),
        ),
        # the trainer logs into its own run only: the registry is the gate's
        "trainer registers a version under its own model": (
            username("trainer", MINE),
            lambda c, a: c.create_model_version(
                model_mine, f"runs:/{run.info.run_id}/model", run.info.run_id
            ),
        ),
        "trainer moves its own champion": (
            username("trainer", MINE),
            lambda c, a: c.set_registered_model_alias(model_mine, "champion", version.version),
        ),
        "trainer tags its own model's version": (
            username("trainer", MINE),
            lambda c, a: c.set_model_version_tag(
                model_mine, version.version, "mlops.gate_verdict", "passed"
            ),
        ),
        # the monitor reads the registry and writes its own runs only
        "monitor moves its own champion": (
            username("monitor", MINE),
            lambda c, a: c.set_registered_model_alias(model_mine, "champion", version.version),
        ),
        "monitor tags its own model's version": (
            username("monitor", MINE),
            lambda c, a: c.set_model_version_tag(
                model_mine, version.version, "realized_roc_auc", "0.99"
            ),
        ),
        "gate moves the other customer's champion": (
            username("gate", MINE),
            lambda c, a: c.set_registered_model_alias(model_other, "champion", "1"),
        ),
        # the read-only role
        "scorer moves its own champion": (
            username("scorer", MINE),
            lambda c, a: c.set_registered_model_alias(model_mine, "champion", version.version),
        ),
        "scorer logs a run": (
            username("scorer", MINE),
            lambda c, a: c.create_run(mine.experiment_id),
        ),
        "scorer deletes its own model": (
            username("scorer", MINE),
            lambda c, a: c.delete_registered_model(model_mine),
        ),
        # the registry's own administration
        "a step identity creates a user": (
            username("gate", MINE),
            lambda c, a: a.create_user("intruder", "x" * 16),
        ),
        "a step identity grants itself MANAGE": (
            username("scorer", MINE),
            lambda c, a: a.grant_user_permission(
                username("scorer", MINE), "registered_model", model_mine, "MANAGE"
            ),
        ),
        "anonymous search": (None, lambda c, a: c.search_experiments()),
        "a wrong password": ("wrong", lambda c, a: c.search_experiments()),
    }
    outcomes = {}
    for probe, (user, call) in probes.items():
        client, auth = _as(registry, user, "not-the-password" if user == "wrong" else None)
        outcomes[probe] = _outcome(lambda: call(client, auth))  # noqa: B023 (called at once)
    assert outcomes == {
        probe: ("UNAUTHENTICATED" if user in (None, "wrong") else "PERMISSION_DENIED")
        for probe, (user, _) in probes.items()
    }

    # the allowed paths each role needs, as positive controls
    client, _ = _as(registry, username("scorer", MINE))
    assert client.get_model_version(model_mine, version.version).version == version.version
    client, _ = _as(registry, username("monitor", MINE))
    assert client.get_model_version(model_mine, version.version).version == version.version
    monitoring = client.create_run(mine.experiment_id)  # its figures go on its own run
    client.log_metric(monitoring.info.run_id, "realized_roc_auc", 0.7)
    client, _ = _as(registry, username("gate", MINE))
    client.set_model_version_tag(model_mine, version.version, "mlops.gate_verdict", "passed")
    client, _ = _as(registry, username("gate", MINE))
    client.set_registered_model_alias(model_mine, "champion", version.version)
    client, _ = _as(registry, username("scorer", MINE))
    assert client.get_model_version_by_alias(model_mine, "champion").version == version.version


def test_provisioning_removes_a_grant_the_table_no_longer_gives(registry):
    """An older deploy gave the trainer EDIT on the registered model (it registered versions);
    the next provisioning leaves it no grant (NO_PERMISSIONS: the server's default applies)."""
    from model_steps import registry_admin

    model_mine = registered_model_name(PIPELINE, MINE)
    trainer = username("trainer", MINE)
    _, auth = _as(registry, "admin")
    auth.grant_user_permission(trainer, "registered_model", model_mine, "EDIT")
    assert auth.get_user_permission(trainer, "registered_model", model_mine).permission == "EDIT"
    registry_admin.provision(registry["uri"], [(PIPELINE, MINE)], registry["identities"])
    assert auth.get_user_permission(trainer, "registered_model", model_mine).permission == (
        "NO_PERMISSIONS"
    )
    client, _ = _as(registry, trainer)
    outcome = _outcome(lambda: client.set_registered_model_alias(model_mine, "champion", "1"))
    assert outcome == "PERMISSION_DENIED"


def test_cluster_provisioning_keeps_passwords_in_secrets_manager(registry, monkeypatch):
    """The provisioning Job's store (helm/mlflow): the same provision(), the passwords in one
    Secrets Manager secret per identity (moto); the secret's keys are what a step pod reads, and
    they log in as exactly that identity."""
    import boto3
    import moto

    from model_steps import registry_admin

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # botocore would follow it past moto
    third = "initech"
    with moto.mock_aws():
        sm = boto3.client("secretsmanager", region_name="eu-west-1")
        store = registry_admin.SecretsManagerIdentities("mlops/mlflow/identities", sm)
        _as(registry, "admin")  # the Job runs as the admin
        registry_admin.provision(registry["uri"], [(PIPELINE, third)], store)
        secret = sm.get_secret_value(SecretId=f"mlops/mlflow/identities/scorer@{third}")
        value = json.loads(secret["SecretString"])
        names = {s["Name"] for s in sm.list_secrets()["SecretList"]}
    assert names == {f"mlops/mlflow/identities/{username(r, third)}" for r in ROLES}
    client, _ = _as(registry, value["username"], value["password"])
    assert client.get_registered_model(registered_model_name(PIPELINE, third)).name
    outcome = _outcome(lambda: client.get_registered_model(registered_model_name(PIPELINE, MINE)))
    assert outcome == "PERMISSION_DENIED"
