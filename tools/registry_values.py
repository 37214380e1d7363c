"""Print the Helm values the registry's cluster side derives from the code (docs/deploy.md).

    python tools/registry_values.py mlflow   > registry-mlflow-values.yaml
    python tools/registry_values.py platform > registry-platform-values.yaml

mlflow: ``provisioning.pipelines``, every ``<pipeline>:<customer>`` of the DAG modules (the pairs the
embedded default grants, embedded.platform.example_pipelines); platform: the registry roles and
customers External Secrets makes one Secret for (mlplatform_contract.registry_access.ROLES), and the
steps MLflow admits (its STEP_ROLES). Pass the file with ``-f`` after your own values; the charts'
defaults are this output for the example DAGs (tests/delivery/test_delivery_registry.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

from embedded.platform import example_pipelines  # noqa: E402
from mlplatform_contract.registry_access import ROLES, STEP_ROLES  # noqa: E402


def mlflow_values(pairs: list[tuple[str, str]]) -> dict:
    return {"provisioning": {"pipelines": [f"{p}:{c}" for p, c in sorted(set(pairs))]}}


def platform_values(pairs: list[tuple[str, str]]) -> dict:
    return {
        "registryIdentities": {
            "roles": sorted(ROLES),
            "customers": sorted({c for _, c in pairs}),
        },
        "networkPolicy": {"mlflowClients": {"steps": sorted(STEP_ROLES)}},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("mlflow", "platform"):
        print(__doc__, file=sys.stderr)
        return 2
    pairs = example_pipelines()
    values = mlflow_values(pairs) if argv[0] == "mlflow" else platform_values(pairs)
    print(yaml.safe_dump(values, sort_keys=True), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
