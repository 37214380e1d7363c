"""The DAG module `make new-model` writes parses with Airflow's DagBag next to the project's, and
its package passes the parse-time check (located and compiled, never imported)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.parametrize("framework", ["keras", "lightgbm"])  # lightgbm: its tuning is off
def test_scaffolded_module_adds_its_dag(
    framework, tmp_path, dags_folder, dagbag, monkeypatch
) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "new_model.py"), "--name", "churn",
         "--framework", framework, "--no-install", "--repo", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    models = tmp_path / "all_models"
    models.mkdir()
    for dist in [*(REPO / "models").iterdir(), tmp_path / "models" / "churn"]:
        if dist.is_dir():
            (models / dist.name).symlink_to(dist)
    monkeypatch.setenv("MLOPS_MODELS_PATH", str(models))
    scaffolded = (tmp_path / "dags" / "churn.py").read_text()
    bag = dagbag(dags_folder({"churn.py": scaffolded}))
    assert bag.import_errors == {}
    dag = bag.dags["churn__acme-foods"]
    assert [t.task_id for t in dag.tasks][:2] == ["ingest", "validate"]
    assert "churn" in dag.tags and dag.owner == "data-science"
