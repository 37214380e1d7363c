"""A fresh `make new-model` scaffold passes the repository's `make lint` (ruff check and ruff format
--check with the repository's settings), for both task types and the longest allowed name, so a
newcomer's first merge request does not fail CI on files nobody has edited yet."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).with_name("ruff")
LONGEST = "c" + "x" * 35 + "_bin"  # 40 characters: the longest pipeline name the spec allows


@pytest.mark.parametrize("task", ["binary_classification", "regression"])
@pytest.mark.parametrize("name", ["churn", LONGEST])
def test_a_fresh_scaffold_passes_lint(task: str, name: str, tmp_path: Path) -> None:
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")  # the repo's ruff settings
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "new_model.py"), "--name", name, "--task", task,
         "--no-install", "--repo", str(tmp_path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py"))
    assert len(written) == 6, written
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
