"""Shared fixtures for the control-plane tests (run with .venv, plugins/ on sys.path)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"

# Airflow reads its home at import: give the whole test session a private, throwaway one.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# The first DAG file of a parse imports the kubernetes client models (~2 s idle); on a loaded 2-core
# machine that alone can pass Airflow's 30 s import timeout, failing a test for the machine's sake.
os.environ.setdefault("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "300")
os.environ.pop("MLOPS_RUNTIME", None)

ML_LIBRARIES = ("tensorflow", "pyspark", "mlflow", "great_expectations", "horovod", "torch")
STEP_KINDS = ("ingest", "validate", "train", "evaluate", "score", "publish")


def digest_ref(step: str, digest_char: str = "a") -> str:
    return f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlops/{step}@sha256:{digest_char * 64}"


@pytest.fixture
def manifest_file(tmp_path: Path) -> Callable[..., Path]:
    """Write an image manifest; entries default to digest-pinned refs for every step."""

    def write(**overrides: str | None) -> Path:
        images = {step: digest_ref(step) for step in STEP_KINDS}
        images.update(overrides)
        images = {k: v for k, v in images.items() if v is not None}
        path = tmp_path / "image_manifest.json"
        path.write_text(json.dumps({"schema_version": 1, "commit": "0" * 40, "images": images}))
        return path

    return write


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Select the runtime (and manifest) the next DAG parse sees."""
    from mlplatform.images import load_manifest

    def select(name: str, manifest: Path | None = None) -> None:
        monkeypatch.setenv("MLOPS_RUNTIME", name)
        if manifest is not None:
            monkeypatch.setenv("MLOPS_IMAGE_MANIFEST", str(manifest))
        load_manifest.cache_clear()

    yield select
    load_manifest.cache_clear()


@pytest.fixture
def dags_folder(tmp_path: Path) -> Callable[..., Path]:
    """A temporary dags folder holding copies of the project's modules plus any extra files."""

    def make(extra: dict[str, str] | None = None, with_project: bool = True) -> Path:
        folder = tmp_path / "dags"
        folder.mkdir(exist_ok=True)
        if with_project:
            for module in DAGS.glob("*.py"):
                shutil.copy(module, folder / module.name)
        for name, text in (extra or {}).items():
            (folder / name).write_text(text)
        return folder

    return make


@pytest.fixture
def dagbag() -> Callable[[Path], object]:
    """Parse a dags folder with Airflow's own DagBag, as the DAG processor does."""
    from airflow.dag_processing.dagbag import DagBag

    return lambda folder: DagBag(dag_folder=str(folder))
