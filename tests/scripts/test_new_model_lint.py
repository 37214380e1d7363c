"""A fresh `make new-model` scaffold passes the repository's `make lint` (ruff check and ruff format
--check with the repository's settings), for both task types, each framework, the longest allowed
name and a name that sorts after mlmodels.restaurant_chain, so a newcomer's first merge request does
not fail CI on files nobody has edited yet. A tree framework's scaffold pins its library at the
workload lock's version, with the hashed lock `make lock` would write and its image jobs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")
LONGEST = "c" + "x" * 35 + "_bin"  # 40 characters: the longest pipeline name the spec allows
sys.path.insert(0, str(REPO / "tools"))
import lock_images  # noqa: E402


def scaffold(tmp_path: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "new_model.py"), *args, "--no-install",
         "--repo", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("task", "name", "framework"),
    [
        ("binary_classification", "churn", "keras"),
        ("regression", "churn", "keras"),
        ("binary_classification", LONGEST, "keras"),
        ("regression", LONGEST, "keras"),
        ("regression", "upsell", "keras"),  # its own imports sort after restaurant_chain's
        ("binary_classification", LONGEST, "lightgbm"),
        ("regression", "upsell", "lightgbm"),
        ("binary_classification", "upsell", "xgboost"),
        ("regression", LONGEST, "xgboost"),
        ("binary_classification", LONGEST, "pytorch"),
        ("regression", "upsell", "pytorch"),
    ],
)
def test_a_fresh_scaffold_passes_lint(task: str, name: str, framework: str, tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")  # the repo's ruff settings
    scaffold(tmp_path, "--name", name, "--task", task, "--framework", framework)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py"))
    assert len(written) == 7, written
    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache", "--diff"]):
        out = subprocess.run(
            [str(RUFF), *command, "."], cwd=tmp_path, capture_output=True, text=True
        )
        assert out.returncode == 0, f"ruff {' '.join(command)}:\n{out.stdout}{out.stderr}"


def test_a_description_that_would_break_lint_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "new_model.py"), "--name", "churn",
         "--description", "x" * 80, "--no-install", "--repo", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2 and "at most 72 characters" in out.stderr
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(("framework", "distributions"), [
    ("lightgbm", ("lightgbm",)), ("xgboost", ("xgboost-cpu",)),
    ("pytorch", ("torch", "safetensors")),  # the format's reader besides the library
])  # fmt: skip
def test_a_framework_scaffold_pins_and_locks_its_libraries(
    framework: str, distributions: tuple[str, ...], tmp_path: Path
) -> None:
    shutil.copy(REPO / ".gitlab-ci.yml", tmp_path / ".gitlab-ci.yml")
    scaffold(tmp_path, "--name", "basket", "--framework", framework)
    workload = lock_images.locked_versions(lock_images.WORKLOAD_LOCK.read_text())
    pinned = [f"{d}=={workload[d]}" for d in distributions]
    project = tomllib.loads((tmp_path / "models" / "basket" / "pyproject.toml").read_text())
    assert project["project"]["dependencies"][2:] == pinned
    lock = (tmp_path / "models" / "basket" / "requirements.lock").read_text()
    assert lock.startswith(lock_images.HEADER)  # what `make lock` writes for a model
    versions = lock_images.locked_versions(lock)
    assert all(versions[d] == workload[d] for d in distributions)
    assert all(workload[name] == version for name, version in versions.items())
    pins = re.split(r"^(?=\S+==)", lock.removeprefix(lock_images.HEADER), flags=re.M)
    assert all("--hash=sha256:" in pin for pin in pins if pin), lock  # every pin hashed
    ci = (tmp_path / ".gitlab-ci.yml").read_text()
    assert "build-model-basket-train:" in ci
    assert f"# basket: extra requirements {', '.join(pinned)}" in ci


def test_a_keras_scaffold_declares_no_extra_requirement(tmp_path: Path) -> None:
    scaffold(tmp_path, "--name", "basket")
    project = tomllib.loads((tmp_path / "models" / "basket" / "pyproject.toml").read_text())
    assert project["project"]["dependencies"] == ["model-steps", "mlmodels-restaurant-chain"]
    assert not (tmp_path / "models" / "basket" / "requirements.lock").exists()
