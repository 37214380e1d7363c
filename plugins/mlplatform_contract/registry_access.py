"""Who may do what in the MLflow registry: one identity per (registry role, customer).

The MLflow server runs its basic-auth app with ``default_permission = NO_PERMISSIONS``: an identity
reaches only what it was granted. Each customer has its own experiment and registered model per
pipeline, and each registry role of that customer its own user, granted on those two resources
only. So a step pod of one customer cannot read, register under or alias another customer's model,
and a step that only reads (score) cannot move ``champion``. Steps that never call MLflow (ingest,
validate, publish, a model's own extra steps) get no registry identity at all.

Both sides read this one table: the embedded platform and the cluster's provisioning job grant it,
the runtimes hand each step its role's credentials, and the security probes check it.

MLflow's permissions are per resource (READ < EDIT < MANAGE): setting the alias, registering a
version and tagging a version all need EDIT on the registered model, so exactly one role holds it:
the gate (evaluate) registers the candidate it verified, tags its verdict and moves ``champion``.
Train logs the model directory in its own run only (no access to the registered model at all), the
monitor writes its figures on its own run and only reads the registry, score only reads.
``NO_PERMISSIONS`` means no grant: the server's default permission (also NO_PERMISSIONS) applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Permission = Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]
ENV_REGISTRY_CREDENTIALS = "MLOPS_REGISTRY_CREDENTIALS"  # local runtime: the identities file
ENV_USERNAME = "MLFLOW_TRACKING_USERNAME"  # read by the MLflow client itself
ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"


@dataclass(frozen=True)
class RegistryRole:
    name: str
    experiment: Permission
    registered_model: Permission
    why: str


ROLES: dict[str, RegistryRole] = {
    r.name: r
    for r in (
        RegistryRole(
            "trainer", "EDIT", "NO_PERMISSIONS", "logs training/tuning runs and the model directory"
        ),
        RegistryRole(
            "gate", "EDIT", "EDIT", "logs the report; registers the candidate; moves the champion"
        ),
        RegistryRole("scorer", "READ", "READ", "loads the champion to score"),
        RegistryRole("monitor", "EDIT", "READ", "logs monitoring runs; reads the scored version"),
    )
}
# step name -> registry role; a step missing here gets no registry credentials
STEP_ROLES: dict[str, str] = {
    "train": "trainer",
    "tune": "trainer",
    "trial": "trainer",
    "halve": "trainer",
    "select": "trainer",
    "evaluate": "gate",
    "score": "scorer",
    "monitor": "monitor",
}


def experiment_name(pipeline: str, customer: str) -> str:
    """One experiment per pipeline and customer: the unit a customer's identities are granted on."""
    return f"{pipeline}/{customer}"


def registered_model_name(pipeline: str, customer: str) -> str:
    return f"{pipeline}-{customer}"


def username(role: str, customer: str) -> str:
    """``scorer@acme-foods``: readable in the MLflow UI and the server's log."""
    if role not in ROLES:
        raise ValueError(f"unknown registry role {role!r}; known: {sorted(ROLES)}")
    return f"{role}@{customer}"


def step_username(step: str, customer: str) -> str | None:
    """The identity a step of ``customer`` runs as, or None for a step that never calls MLflow."""
    role = STEP_ROLES.get(step)
    return username(role, customer) if role else None
