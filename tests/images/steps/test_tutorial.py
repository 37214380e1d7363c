"""docs/tutorial-new-model.md, followed as a newcomer would, on a scratch copy: scaffold, change
features and label (the tutorial's own code), bring the suite up to date, run the model's own tests
(its hooks end to end on example data). Each step runs what the tutorial's command runs; the test
fails when a step needs a command the tutorial does not give, or names a make target that does not
exist. (`make run MODEL=churn` itself is what tests/dags/test_airflow_dags_test.py covers for the
example models; it is not repeated here.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # Spark and TensorFlow in a subprocess: about a minute

REPO = Path(__file__).resolve().parents[3]
TUTORIAL = REPO / "docs" / "tutorial-new-model.md"
NAME = "churn"
# what the newcomer's path needs, step by step, as the tutorial must spell it
NEEDED = {
    "scaffold": f"make new-model NAME={NAME}",
    "suite": f"make suite MODEL={NAME}",
    "own tests": f".venv-steps/bin/pytest models/{NAME}",
    "end to end": f"make run MODEL={NAME}",
    "lint": "make lint",
}


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", TUTORIAL.read_text(), flags=re.S)


def commands() -> list[str]:
    return [line.split("#")[0].strip() for b in blocks("bash") for line in b.splitlines()]


def test_the_tutorial_gives_every_command_and_only_real_make_targets() -> None:
    given = commands()
    missing = [f"{step}: `{cmd}`" for step, cmd in NEEDED.items() if cmd not in given]
    assert not missing, f"the tutorial does not give the command for {missing}"
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", (REPO / "Makefile").read_text(), flags=re.M))
    unknown = [c for c in given if c.startswith("make ") and c.split()[1] not in targets]
    assert not unknown, f"make targets the Makefile does not have: {unknown}"


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)


def test_the_newcomers_path_works_as_written(tmp_path: Path) -> None:
    given = commands()
    steps_py = str(Path(sys.executable))
    package = tmp_path / "models" / NAME / "mlmodels" / NAME
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "models" / NAME)}
    env.pop("VIRTUAL_ENV", None)

    assert (
        NEEDED["scaffold"] in given
    )  # make new-model = write the files, install, derive the suite
    _ok(_run([steps_py, str(REPO / "scripts" / "new_model.py"), "--name", NAME, "--no-install",
              "--repo", str(tmp_path)], env, tmp_path))  # fmt: skip
    suite_cmd = [steps_py, "-m", "model_steps.expectations", f"mlmodels.{NAME}"]
    _ok(_run(suite_cmd, env, tmp_path))

    features = next(b for b in blocks("python") if b.startswith(f"# models/{NAME}/"))
    (package / "features.py").write_text(features)
    outcome = next(b for b in blocks("text") if "positive_outcome" in b).strip()
    init = package / "__init__.py"
    init.write_text(re.sub(r"positive_outcome=\"good\",", outcome, init.read_text()))
    data = next(b for b in blocks("text") if b.startswith('"data"')).strip()
    dag = tmp_path / "dags" / f"{NAME}.py"
    dag.write_text(re.sub(r'"data": \{[^}]*\},', data, dag.read_text()))
    assert '"label_window_days": 28' in dag.read_text()

    stale = _run([*suite_cmd, "--check"], env, tmp_path)
    assert stale.returncode == 1 and f"Run `make suite MODEL={NAME}`" in stale.stderr, stale.stderr
    assert NEEDED["suite"] in given
    _ok(_run(suite_cmd, env, tmp_path))

    assert NEEDED["own tests"] in given
    tests = _run([steps_py, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"models/{NAME}"],
                 {**env, "PYTHONDONTWRITEBYTECODE": "1"}, tmp_path)  # fmt: skip
    _ok(tests)
    assert "1 passed" in tests.stdout


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, f"{done.args}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
