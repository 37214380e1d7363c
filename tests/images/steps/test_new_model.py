"""`make new-model` gives a newcomer a working skeleton: the scaffold's package passes the
platform's contract (its hooks end to end on example data, its generated suite included), for
both task types, as a Keras network, as a LightGBM or XGBoost fit and as a PyTorch module and fit
(fitted, stored in its framework's format and served back through model_store).
(tests/dags/test_new_model_dags.py parses its DAG module with Airflow;
tests/scripts/test_new_model_lint.py lints it and checks its lock.)"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from model_steps import expectations
from model_steps.model_loader import ModelRef, check_model
from model_steps.testing import hook_run_problems, local_spark, run_hooks

pytest.importorskip("tensorflow")
REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "framework"),
    [
        ("binary_classification", "keras"),
        ("regression", "keras"),
        ("binary_classification", "lightgbm"),
        ("regression", "lightgbm"),
        ("binary_classification", "xgboost"),  # the same tree template as lightgbm: one task
        ("binary_classification", "pytorch"),
        ("regression", "pytorch"),
    ],
)
def test_the_scaffold_runs_end_to_end(task, framework, tmp_path, monkeypatch) -> None:
    name = f"scaffolded_{task[:3]}_{framework}"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "new_model.py"), "--name", name, "--task", task,
         "--framework", framework, "--no-install", "--repo", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    source = tmp_path / "models" / name
    import mlmodels

    monkeypatch.setattr(mlmodels, "__path__", [*mlmodels.__path__, str(source / "mlmodels")])
    model = importlib.import_module(f"mlmodels.{name}").MODEL
    model.suite.write_text(json.dumps(expectations.skeleton(model)))  # what the install step does
    model = check_model(model, ModelRef(f"mlmodels.{name}", task))
    assert (tmp_path / "dags" / f"{name}.py").exists()
    assert (source / "tests" / f"test_{name}.py").exists()
    assert model.framework == framework and (model.fit is None) == (framework == "keras")
    # the scaffolded DAG module's layered settings; a tree model is fitted, saved in its format and
    # loaded back through model_store (testing._fit_other), as the train and score steps do
    run = run_hooks(model, local_spark())
    assert hook_run_problems(model, run) == []
    # every non-Keras scaffold checkpoints its fit: the kit killed it after its first checkpoint
    # and the resumed fit predicted as the one that ran through
    assert (run.resumed is not None) == (framework != "keras")
    assert model.output_column == ("prediction" if task == "regression" else "score")


def test_the_scaffold_refuses_a_bad_or_taken_name(tmp_path) -> None:
    script = [sys.executable, str(REPO / "scripts" / "new_model.py"), "--no-install",
              "--repo", str(tmp_path)]  # fmt: skip
    bad = subprocess.run([*script, "--name", "Churn!"], capture_output=True, text=True)
    assert bad.returncode == 2 and "NAME 'Churn!'" in bad.stderr
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "churn.py").write_text("# taken\n")
    taken = subprocess.run([*script, "--name", "churn"], capture_output=True, text=True)
    assert taken.returncode == 2 and "churn exists already (dags/churn.py)" in taken.stderr
    assert (tmp_path / "dags" / "churn.py").read_text() == "# taken\n"  # nothing overwritten
    assert not (tmp_path / "models").exists()
    torch = subprocess.run([*script, "--name", "ranker", "--framework", "torch"],
                           capture_output=True, text=True)  # fmt: skip
    assert torch.returncode == 2 and "FRAMEWORK 'torch' is not one this scaffold writes" in (
        torch.stderr
    )
    assert "keras, lightgbm, xgboost" in torch.stderr and not (tmp_path / "models").exists()
