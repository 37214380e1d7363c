"""Grant the registry: each customer's experiment and registered model, and its role identities.

Run with the MLflow admin's credentials (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``), never by a
step. For every (pipeline, customer) it makes sure the experiment and the registered model exist,
that each registry role of the customer has a user, and that each user holds exactly its role's
permission on those two resources (mlplatform_contract.registry_access). Idempotent: a second run
changes nothing, a changed table updates the grants.

    python -m model_steps.registry_admin --tracking-uri URI \\
        (--identities FILE | --secrets-prefix PREFIX) --pipeline <pipeline>:<customer> [...]

Where the passwords live is the one difference between the two deployments (an ``IdentityStore``):
the embedded platform keeps a JSON file mapping each username to its password (mode 0600) in its
services state, and the local runtime hands each step only its own entry; the cluster's
provisioning Job (helm/mlflow, a post-install/post-upgrade hook) keeps one AWS Secrets Manager
secret per identity, ``<prefix>/<role>@<customer>``, which External Secrets copies into the step
namespace as the Secret each step pod reads key by key (docs/registry-access.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from mlplatform_contract.files import write_private_json
from mlplatform_contract.registry_access import (
    ROLES,
    experiment_name,
    registered_model_name,
    username,
)

log = logging.getLogger("model_steps.registry_admin")


class IdentityStore(Protocol):
    """Where each identity's password is kept: read before a user is made, written when one is."""

    def password(self, user: str) -> str | None: ...

    def keep(self, user: str, password: str) -> None: ...

    def close(self) -> None: ...


class FileIdentities:
    """The embedded default's store: one JSON file, written 0600 on close (also after a failure)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}

    def password(self, user: str) -> str | None:
        return self.known.get(user)

    def keep(self, user: str, password: str) -> None:
        self.known[user] = password

    def close(self) -> None:
        write_private_json(self.path, self.known, indent=1, sort_keys=True)


class SecretsManagerIdentities:
    """The cluster's store: one AWS Secrets Manager secret per identity, ``<prefix>/<user>``, whose
    value is ``{"username": ..., "password": ...}`` (the keys of the step pod's Secret), tagged
    with its role and customer. Written at once, so a user made before a failure keeps it."""

    def __init__(self, prefix: str, client: Any = None, kms_key_id: str | None = None) -> None:
        import boto3

        self.prefix = prefix.rstrip("/")
        self.client = client or boto3.client("secretsmanager")
        self.kms_key_id = kms_key_id

    def name(self, user: str) -> str:
        return f"{self.prefix}/{user}"

    def password(self, user: str) -> str | None:
        try:
            value = self.client.get_secret_value(SecretId=self.name(user))["SecretString"]
        except self.client.exceptions.ResourceNotFoundException:
            return None
        return json.loads(value)["password"]

    def keep(self, user: str, password: str) -> None:
        value = json.dumps({"username": user, "password": password})
        try:
            self.client.put_secret_value(SecretId=self.name(user), SecretString=value)
        except self.client.exceptions.ResourceNotFoundException:
            role, _, customer = user.partition("@")
            extra = {"KmsKeyId": self.kms_key_id} if self.kms_key_id else {}
            self.client.create_secret(
                Name=self.name(user), SecretString=value, **extra,
                Tags=[{"Key": "mlops.io/role", "Value": role},
                      {"Key": "mlops.io/customer", "Value": customer}],
            )  # fmt: skip

    def close(self) -> None:
        return None


def _ensure_user(auth, name: str, store: IdentityStore) -> None:
    from mlflow.exceptions import RestException

    if store.password(name) is not None:
        return
    password = secrets.token_urlsafe(24)
    try:
        auth.create_user(name, password)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.update_user_password(name, password)  # its password was lost: a new one
    store.keep(name, password)


def _grant(auth, user: str, resource_type: str, resource: str, permission: str) -> None:
    """Exactly ``permission`` for ``user`` on one resource (a changed table replaces the grant;
    NO_PERMISSIONS, which MLflow does not grant, removes any grant: the default applies)."""
    from mlflow.exceptions import RestException

    current = auth.get_user_permission(user, resource_type, resource).permission
    if current == permission:
        return
    if permission == "NO_PERMISSIONS":
        auth.revoke_user_permission(user, resource_type, resource)
        return
    try:
        auth.grant_user_permission(user, resource_type, resource, permission)
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.revoke_user_permission(user, resource_type, resource)
        auth.grant_user_permission(user, resource_type, resource, permission)


def _ensure_resources(client, pipeline: str, customer: str) -> tuple[str, str]:
    """(experiment id, registered model name), created by the admin when missing."""
    from mlflow.exceptions import RestException

    experiment = client.get_experiment_by_name(experiment_name(pipeline, customer))
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(experiment_name(pipeline, customer))
    )
    model = registered_model_name(pipeline, customer)
    try:
        client.create_registered_model(model, tags={"pipeline": pipeline, "customer": customer})
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return experiment_id, model


def provision(
    tracking_uri: str, pairs: Iterable[tuple[str, str]], identities: Path | IdentityStore
) -> dict:
    """Create and grant everything ``pairs`` need; returns what it granted, per pipeline.
    ``identities``: the store of the passwords (a Path: the embedded default's JSON file)."""
    import mlflow
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    store = FileIdentities(identities) if isinstance(identities, Path) else identities
    granted: dict[str, dict[str, str]] = {}
    try:
        for pipeline, customer in sorted(set(pairs)):
            experiment_id, model = _ensure_resources(client, pipeline, customer)
            for role in ROLES.values():
                user = username(role.name, customer)
                _ensure_user(auth, user, store)
                _grant(auth, user, "experiment", experiment_id, role.experiment)
                _grant(auth, user, "registered_model", model, role.registered_model)
                granted.setdefault(f"{pipeline}/{customer}", {})[user] = (
                    f"experiment {role.experiment}, model {role.registered_model}"
                )
    finally:
        store.close()  # users created before a failure keep their password
    return granted


def _pair(text: str) -> tuple[str, str]:
    pipeline, sep, customer = text.partition(":")
    if not sep or not pipeline or not customer:
        raise argparse.ArgumentTypeError(f"expected <pipeline>:<customer>, got {text!r}")
    return pipeline, customer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_steps.registry_admin",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--tracking-uri", required=True)
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument("--identities", type=Path, help="username -> password JSON (embedded)")
    store.add_argument("--secrets-prefix", help="AWS Secrets Manager name prefix (cluster)")
    parser.add_argument("--kms-key-id", help="KMS key of the secrets it creates (cluster)")
    parser.add_argument("--pipeline", type=_pair, action="append", required=True,
                        metavar="PIPELINE:CUSTOMER")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        print(
            "registry_admin: set MLFLOW_TRACKING_USERNAME/_PASSWORD to the admin's", file=sys.stderr
        )
        return 2
    from model_steps.tracking import bound_mlflow_client, wait_for_server

    bound_mlflow_client()
    wait_for_server(args.tracking_uri, budget_s=300)  # a hook Job may start before the server
    store = args.identities or SecretsManagerIdentities(args.secrets_prefix, None, args.kms_key_id)
    granted = provision(args.tracking_uri, args.pipeline, store)
    print(json.dumps(granted, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
