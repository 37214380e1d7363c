"""Grant the registry: each customer's experiment and registered model, and its role identities.

Run with the MLflow admin's credentials (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``), never by a
step. For every (pipeline, customer) it makes sure the experiment and the registered model exist,
that each registry role of the customer has a user, and that each user holds exactly its role's
permission on those two resources (mlplatform_contract.registry_access). Idempotent: a second run
changes nothing, a changed table updates the grants.

    python -m model_steps.registry_admin --tracking-uri URI --identities FILE \\
        --pipeline <pipeline>:<customer> [--pipeline ...]

The identities file maps each username to its password (mode 0600). The embedded platform keeps it
in its services state and the local runtime hands each step only its own entry; in the cluster
the same passwords go to the secret store, one Secret per identity (docs/registry-access.md).
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

from mlplatform_contract.files import write_private_json
from mlplatform_contract.registry_access import (
    ROLES,
    experiment_name,
    registered_model_name,
    username,
)

log = logging.getLogger("model_steps.registry_admin")


def _load(path: Path) -> dict[str, str]:
    return json.loads(path.read_text()) if path.exists() else {}


def _ensure_user(auth, name: str, identities: dict[str, str]) -> None:
    from mlflow.exceptions import RestException

    if name in identities:
        return
    identities[name] = secrets.token_urlsafe(24)
    try:
        auth.create_user(name, identities[name])
    except RestException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.update_user_password(name, identities[name])  # its password was lost: a new one


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


def provision(tracking_uri: str, pairs: Iterable[tuple[str, str]], identities_file: Path) -> dict:
    """Create and grant everything ``pairs`` need; returns what it granted, per pipeline."""
    import mlflow
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    identities = _load(identities_file)
    granted: dict[str, dict[str, str]] = {}
    try:
        for pipeline, customer in sorted(set(pairs)):
            experiment_id, model = _ensure_resources(client, pipeline, customer)
            for role in ROLES.values():
                user = username(role.name, customer)
                _ensure_user(auth, user, identities)
                _grant(auth, user, "experiment", experiment_id, role.experiment)
                _grant(auth, user, "registered_model", model, role.registered_model)
                granted.setdefault(f"{pipeline}/{customer}", {})[user] = (
                    f"experiment {role.experiment}, model {role.registered_model}"
                )
    finally:
        # users created before a failure keep their password
        write_private_json(identities_file, identities, indent=1, sort_keys=True)
    return granted


def _pair(text: str) -> tuple[str, str]:
    pipeline, sep, customer = text.partition(":")
    if not sep or not pipeline or not customer:
        raise argparse.ArgumentTypeError(f"expected <pipeline>:<customer>, got {text!r}")
    return pipeline, customer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_steps.registry_admin",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--identities", type=Path, required=True, help="username -> password JSON")
    parser.add_argument("--pipeline", type=_pair, action="append", required=True,
                        metavar="PIPELINE:CUSTOMER")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        print(
            "registry_admin: set MLFLOW_TRACKING_USERNAME/_PASSWORD to the admin's", file=sys.stderr
        )
        return 2
    granted = provision(args.tracking_uri, args.pipeline, args.identities)
    print(json.dumps(granted, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
