"""The MPIJobs the control plane renders, validated against the kubeflow mpi-operator's own CRD schema
(vendored in ../shared/vendor): the OpenAPI v3 schema the API server would apply, made strict the way
``kubectl apply --validate=strict`` is (an unknown field is an error, not silently pruned).
"""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from delivery_helpers import REPO, output_of, run, vendored

MPIJOB_CRD = "kubeflow-mpi-operator-crd/kubeflow.org_mpijobs.yaml"
CONTROL_PLANE_PYTHON = REPO / ".venv" / "bin" / "python"
MULTI_NODE = textwrap.dedent(
    '''
    """Airflow DAG module: a big model trained on several GPU nodes."""
    from mlplatform import register_pipeline

    register_pipeline(globals(), {
        "name": "big_model", "model": "mlmodels.customer_propensity",
        "task": "binary_classification", "owner": "ml-core", "description": "Multi-node.",
        "steps": {"train": {"gpu": 8, "nodes": 3, "memory": "200Gi", "shm_size": "32Gi"}},
        "tiers": {"t": {}}, "customers": [{"id": "giant-co", "tier": "t"}],
    })
    '''
)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """Close every object that lists its properties (unless it preserves unknown fields)."""
    schema = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


@pytest.fixture(scope="module")
def mpijob_schema() -> dict[str, Any]:
    crd = yaml.safe_load(vendored(MPIJOB_CRD).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v2beta1"]
    return strict(version["schema"]["openAPIV3Schema"])


@pytest.fixture(scope="module")
def rendered_mpijobs(tmp_path_factory) -> list[dict[str, Any]]:
    work = tmp_path_factory.mktemp("mpijob")
    dags = work / "dags"
    dags.mkdir()
    (dags / "big_model.py").write_text(MULTI_NODE)
    manifest = work / "image_manifest.json"
    kinds = ("ingest", "validate", "train", "evaluate", "score", "publish")
    images = {
        k: f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlops/{k}@sha256:{'b' * 64}"
        for k in kinds
    }
    manifest.write_text(json.dumps({"schema_version": 1, "commit": "c" * 40, "images": images}))
    out = work / "out"
    proc = run(
        [str(CONTROL_PLANE_PYTHON), "-m", "mlplatform.render", "--dags-folder", str(dags), "--out", str(out)],
        env={"PYTHONPATH": str(REPO / "plugins"), "MLOPS_RUNTIME": "kubernetes",
             "MLOPS_IMAGE_MANIFEST": str(manifest), "AIRFLOW_HOME": str(work / "airflow-home"),
             "AIRFLOW__CORE__LOAD_EXAMPLES": "False"},
    )  # fmt: skip
    assert proc.returncode == 0, output_of(proc)
    jobs = [yaml.safe_load(p.read_text()) for p in sorted(Path(out).glob("*.mpijob.yaml"))]
    assert len(jobs) == 1, output_of(proc)
    return jobs


def test_rendered_mpijobs_match_the_mpi_operator_crd(rendered_mpijobs, mpijob_schema):
    for job in rendered_mpijobs:
        errors = sorted(
            jsonschema.Draft7Validator(mpijob_schema).iter_errors(job), key=lambda e: list(e.path)
        )
        assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_strict_schema_catches_a_misspelt_field(rendered_mpijobs, mpijob_schema):
    job = copy.deepcopy(rendered_mpijobs[0])
    job["spec"]["runPolicy"]["cleanupPodPolicy"] = "Running"  # the real field is cleanPodPolicy
    job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] = "3"
    messages = [e.message for e in jsonschema.Draft7Validator(mpijob_schema).iter_errors(job)]
    assert any("cleanupPodPolicy" in m for m in messages), messages
    assert any("'3' is not of type 'integer'" in m for m in messages), messages


def test_restart_safety_fields(rendered_mpijobs):
    (job,) = rendered_mpijobs
    labels = job["metadata"]["labels"]
    assert (
        labels["mlops.io/dag-id"] == "big_model__giant-co" and labels["mlops.io/task-id"] == "train"
    )
    assert labels["mlops.io/try-number"] == "1" and labels["mlops.io/run-id"]
    policy = job["spec"]["runPolicy"]
    assert policy["cleanPodPolicy"] == "Running" and policy["backoffLimit"] == 0
    assert policy["ttlSecondsAfterFinished"] >= 24 * 3600, "a failed job stays for debugging"
    assert job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 3
