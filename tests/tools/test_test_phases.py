"""The guard against test-time creep (tools/test_phases.py): each phase of `make test` is timed and
counted, and a phase more than 20 % over its figure in the budget file gets a WARNING line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import test_phases

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0"
failures="1" skipped="2" tests="4" time="30.0">
<testcase classname="tests.dags.test_a" name="test_x" time="10.0"/>
<testcase classname="tests.dags.test_b" name="test_y" time="5.5"><failure message="no"/></testcase>
<testcase classname="tests.delivery.test_c" name="test_z" time="2.0"><skipped/></testcase>
<testcase classname="tests.delivery.test_c" name="test_w" time="0.5"><skipped/></testcase>
</testsuite></testsuites>"""


@pytest.fixture
def budget(tmp_path: Path) -> Path:
    path = REPO / "var" / "test-times" / f"budget-{tmp_path.name}.json"  # report names it from REPO
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tolerance": 0.2, "targets": {"test": {
        "total": 200, "phases": {"lint": 10, "control-plane": 100}}}}))  # fmt: skip
    yield path
    path.unlink()


def test_a_phase_is_timed_with_its_exit_code_and_junit_counts(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(test_phases, "TIMES_DIR", tmp_path)
    monkeypatch.setattr(test_phases, "PHASES_FILE", tmp_path / "phases.jsonl")
    junit = tmp_path / "control-plane.xml"  # the phase's pytest writes it (--junitxml)
    writes = f"import pathlib, sys; pathlib.Path({str(junit)!r}).write_text({JUNIT!r}); sys.exit(3)"
    assert test_phases.run_phase("control-plane", [sys.executable, "-c", writes]) == 3
    (record,) = [json.loads(line) for line in (tmp_path / "phases.jsonl").read_text().splitlines()]
    assert record["phase"] == "control-plane" and record["rc"] == 3 and record["seconds"] >= 0
    assert record["counts"]["tests"] == 4 and record["counts"]["failures"] == 1


def test_junit_counts_and_test_time_per_folder(tmp_path: Path) -> None:
    (tmp_path / "j.xml").write_text(JUNIT)
    counts = test_phases.junit_counts(tmp_path / "j.xml")
    assert {k: counts[k] for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": 4, "failures": 1, "errors": 0, "skipped": 2}  # fmt: skip
    assert counts["folders"] == {"tests/dags": 15.5, "tests/delivery": 2.5}
    assert test_phases.junit_counts(tmp_path / "missing.xml") is None


def test_only_a_phase_over_its_budget_by_more_than_the_tolerance_warns(tmp_path, budget) -> None:
    phases = tmp_path / "phases.jsonl"
    rows = [
        {"phase": "lint", "seconds": 11.5, "rc": 0, "counts": None},  # +15%: fine
        {"phase": "control-plane", "seconds": 125.0, "rc": 1,  # +25%
         "counts": {"tests": 4, "failures": 1, "errors": 0, "skipped": 2}},
    ]  # fmt: skip
    phases.write_text("\n".join(json.dumps(r) for r in rows))
    lines = test_phases.report("test", phases, budget)
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1 and "phase control-plane took 125 s, 25% over" in warnings[0]
    assert any(line.startswith("control-plane") and "exit 1" in line for line in lines)
    assert any(line.startswith("total") and "136" in line for line in lines)
    assert lines[-1] == "tests: 1 passed, 1 failed, 2 skipped"  # CI's closing line, last


def test_the_budget_file_covers_every_phase_the_makefile_times() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target, budget in json.loads(test_phases.BUDGET_FILE.read_text())["targets"].items():
        for phase in budget["phases"]:
            assert f"$(PHASE) {phase} --" in makefile, (target, phase)
