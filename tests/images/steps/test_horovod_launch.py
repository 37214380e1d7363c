"""The local runtime's horovodrun (``model_steps.horovod_launch``): Horovod's own launcher, minus
its TensorFlow-importing build probe. Ranks here are plain Python (no TensorFlow), so the module
takes a few seconds; the real two-rank training goes through it in test_train.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

LAUNCHER = [sys.executable, "-m", "model_steps.horovod_launch"]
RANK_SCRIPT = (
    "import os, pathlib, sys\n"
    "rank = os.environ['HOROVOD_RANK']\n"
    "pathlib.Path(sys.argv[1], 'rank' + rank).write_text(os.environ['HOROVOD_SIZE'])\n"
    "sys.exit(int(sys.argv[2]) if rank == '1' else 0)\n"
)


def launch(tmp_path: Path, rank1_exit: int, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [*LAUNCHER, "-np", "2", "-H", "localhost:2", *extra, sys.executable, "-c", RANK_SCRIPT,
            str(tmp_path), str(rank1_exit)]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_gloo_ranks_start_with_horovods_rank_environment(tmp_path: Path) -> None:
    done = launch(tmp_path, 0, "--gloo")
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank0", "rank1"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"2"}


def test_a_failed_rank_fails_the_launch_as_horovodrun_does(tmp_path: Path) -> None:
    done = launch(tmp_path, 3, "--gloo")
    assert done.returncode != 0
    assert "exited with non-zero status" in done.stdout + done.stderr


def test_the_gloo_probe_is_skipped_only_with_gloo(monkeypatch) -> None:
    """With ``--gloo`` the launcher answers Horovod's probe itself; without it Horovod's own probe
    stays in place (MPI and the cluster's launchers are plain horovodrun)."""
    from horovod.common import util
    from horovod.runner import launch as horovod_launch

    from model_steps import horovod_launch as ours

    seen: list[str] = []
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() sets horovodrun's argv
    monkeypatch.setattr(horovod_launch, "run_commandline", lambda: seen.append("ran"))
    monkeypatch.setattr(horovod_launch, "gloo_built", util.gloo_built)
    assert ours.main(["-np", "2", "python", "-c", "pass"]) == 0
    assert horovod_launch.gloo_built is util.gloo_built
    assert ours.main(["-np", "2", "--gloo", "python", "-c", "pass"]) == 0
    assert horovod_launch.gloo_built(verbose=False) is True
    assert seen == ["ran", "ran"]
