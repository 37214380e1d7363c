"""Shared fixtures for the control-plane tests (run with .venv, plugins/ on sys.path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
# pyspark.sql.connect (great_expectations imports it) takes a __main__ module without __file__ for
# its own doctest runner and calls sys.exit(0); an xdist worker's __main__ (execnet's) has none.
if not hasattr(sys.modules["__main__"], "__file__"):
    sys.modules["__main__"].__file__ = "<pytest-xdist worker>"

AIRFLOW = Path(sys.executable).parent / "airflow"
ML_LIBRARIES = ("tensorflow", "pyspark", "mlflow", "great_expectations", "horovod", "torch")
STEP_KINDS = ("ingest", "validate", "train", "evaluate", "score", "publish")


def digest_ref(step: str, digest_char: str = "a") -> str:
    return f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlops/{step}@sha256:{digest_char * 64}"


def write_manifest(folder: Path, **overrides: str | None) -> Path:
    """An image manifest in ``folder``; entries default to digest-pinned refs for every step."""
    images = {step: digest_ref(step) for step in STEP_KINDS}
    images.update(overrides)
    images = {k: v for k, v in images.items() if v is not None}
    path = folder / "image_manifest.json"
    path.write_text(json.dumps({"schema_version": 1, "commit": "0" * 40, "images": images}))
    return path


@pytest.fixture
def manifest_file(tmp_path: Path) -> Callable[..., Path]:
    """Write an image manifest; entries default to digest-pinned refs for every step."""
    return lambda **overrides: write_manifest(tmp_path, **overrides)


def select_runtime(mp: pytest.MonkeyPatch, name: str, manifest: Path | None = None) -> None:
    """The runtime (and manifest) the next DAG parse sees, set through ``mp`` (undone with it)."""
    from mlplatform.images import load_manifest

    mp.setenv("MLOPS_RUNTIME", name)
    if manifest is not None:
        mp.setenv("MLOPS_IMAGE_MANIFEST", str(manifest))
    load_manifest.cache_clear()


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Select the runtime (and manifest) the next DAG parse sees."""
    from mlplatform.images import load_manifest

    yield lambda name, manifest=None: select_runtime(monkeypatch, name, manifest)
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


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """A fresh Airflow home with a migrated sqlite metadata DB, made by copying one template.

    `airflow db migrate` costs ~20 s of CPU; the tests that run Airflow's CLI (dags test, the
    scheduler's run creation, reserialize) each need their own DB, but not their own migration:
    ``make run`` starts its DAG runs the same way (scripts/run_example.py)."""
    template = tmp_path_factory.mktemp("airflow-migrated")
    env = {**os.environ, "AIRFLOW_HOME": str(template), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    def make(home: Path) -> Path:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy2(template / "airflow.db", home / "airflow.db")
        return home

    return make


@pytest.fixture(scope="session")
def two_models(tmp_path_factory: pytest.TempPathFactory, airflow_home):
    """The example models' DAGs (the two Keras ones and the LightGBM one) run once through Airflow
    on the embedded platform, for the whole session (tests/two_models.py); every test reading a
    whole run's traces shares it."""
    from two_models import assert_succeeded, two_models_run, workload_ready

    if not workload_ready():
        pytest.skip("workload venv without every extra (make setup)")
    with two_models_run(tmp_path_factory.mktemp("two-models"), airflow_home) as run:
        assert_succeeded(run)
        yield run


# What makes a test `slow` (left out of `make test-fast`): a fixture that starts something costly,
# a JVM, a server, a DAG run, an Airflow DB. Tests that start processes on their own say so with
# @pytest.mark.slow (or a module's pytestmark).
COSTLY_FIXTURES = frozenset(
    {"two_models", "airflow_home", "spark", "mlflow_services", "small_features_lake",
     "pristine_lake", "served", "receiver"}
)  # fmt: skip
# Session-scoped runs that several modules read: their tests share one xdist worker, so the run
# happens once (make test runs each pytest phase with `-n 2 --dist loadgroup`, docs/testing.md).
SHARED_RUNS = ("two_models", "small_features_lake")
# The longest groups go to the workers first, so no worker is left with one long group at the end.
LONG_GROUPS = ("two_models", "small_features_lake", "tests/scripts/test_airflow_local")


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0].removesuffix(".py")


def _groups(items: list[pytest.Item]) -> dict[str, str]:
    """module -> its xdist group: the first shared run any of its tests uses, else the module."""
    groups: dict[str, str] = {}
    for item in items:
        shared = next((name for name in SHARED_RUNS if name in item.fixturenames), None)
        if shared or _module(item) not in groups:
            groups[_module(item)] = shared or groups.get(_module(item)) or _module(item)
    return groups


def _tag_for_xdist(item: pytest.Item) -> None:
    """xdist 3.8 (the last release) tells the scheduler a test's group by setting
    ``item._nodeid = "<nodeid>@<group>"``, which pytest 9 no longer reads (the id is ``item._id``),
    so every test became a group of its own; this does what it means to do."""
    group = next(item.iter_markers("xdist_group")).args[0]
    if not item.nodeid.endswith(f"@{group}"):
        item._id = type(item._id).parse(f"{item.nodeid}@{group}")


@pytest.hookimpl(wrapper=True)  # before every plugin's hook, xdist's (it reads the groups) included
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Mark costly tests slow, and group tests for xdist: a module's tests in one group (its
    module-scoped fixtures run once), the modules of a shared session run in one; long groups first
    (a stable sort: a module's tests stay together and in order)."""
    groups = _groups(items)
    for item in items:
        if COSTLY_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(groups[_module(item)]))
        if config.getoption("loadgroup", default=False):  # in an xdist worker
            _tag_for_xdist(item)
    rank = {
        g: LONG_GROUPS.index(g) if g in LONG_GROUPS else len(LONG_GROUPS) for g in groups.values()
    }
    items.sort(key=lambda item: rank.get(groups[_module(item)], len(LONG_GROUPS)))
    return (yield)
