"""Where `make test`'s time goes: each phase timed, and a budget that warns before CI runs out.

``make test`` runs every phase through ``run``, which times the phase's command, appends one line
(phase, wall seconds, exit code, test counts from its JUnit file) to ``var/test-times/phases.jsonl``
and exits with the command's code. ``report`` ends ``make test`` (also when a phase failed): it
prints one table, phase by phase, against the budget in ``ci/test-budget.json``, and prints a
WARNING for every phase more than ``tolerance`` (20 %) over its recorded figure, so the change that
made the suite slower sees its cost in its own CI log. A warning never fails the run: timings on a
shared 2-core machine are noisy, and a red build for noise teaches people to ignore it.

Stdlib only: it runs before any virtualenv exists (the installs phase is timed too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TIMES_DIR = Path(os.environ.get("MLOPS_TEST_TIMES", REPO / "var" / "test-times"))
PHASES_FILE = TIMES_DIR / "phases.jsonl"
BUDGET_FILE = REPO / "ci" / "test-budget.json"


def junit_counts(path: Path) -> dict[str, Any] | None:
    """Tests, failures, errors and skips of one pytest run, and its test time per folder, from its
    JUnit XML (None if absent). With xdist the folders' times overlap: they add up to more than
    the phase's wall time, and show where the work is, not when it ran."""
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals: dict[str, Any] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    folders: dict[str, float] = {}
    for case in root.iter("testcase"):
        folder = "/".join(case.get("classname", "?").split(".")[:2])
        folders[folder] = folders.get(folder, 0.0) + float(case.get("time", 0))
    totals["folders"] = {k: round(v, 1) for k, v in sorted(folders.items())}
    return totals


def run_phase(name: str, command: list[str]) -> int:
    """Run one phase's command, record its wall time, return its exit code."""
    TIMES_DIR.mkdir(parents=True, exist_ok=True)
    junit = TIMES_DIR / f"{name}.xml"
    junit.unlink(missing_ok=True)
    print(f"==> phase {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    rc = subprocess.run(command, check=False).returncode
    seconds = round(time.monotonic() - started, 1)
    record = {"phase": name, "seconds": seconds, "rc": rc, "counts": junit_counts(junit)}
    with PHASES_FILE.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(f"==> phase {name}: {seconds:.0f} s, exit {rc}", flush=True)
    return rc


def load_budget(target: str, path: Path = BUDGET_FILE) -> tuple[dict[str, Any], float]:
    """The budget of one make target (its phases' seconds and total) and the tolerance."""
    budget = json.loads(path.read_text())
    if target not in budget["targets"]:
        raise SystemExit(
            f"{path}: no budget for target {target!r} (have {sorted(budget['targets'])})"
        )
    return budget["targets"][target], float(budget.get("tolerance", 0.2))


def over_budget(seconds: float, budget_s: float | None, tolerance: float) -> bool:
    return budget_s is not None and seconds > budget_s * (1 + tolerance)


def _tests_column(counts: dict[str, int] | None) -> str:
    if not counts:
        return ""
    failed = counts["failures"] + counts["errors"]
    return f"{counts['tests']} ({failed} failed, {counts['skipped']} skipped)"


def _warning(what: str, seconds: float, budget_s: float, where: Path) -> str:
    return (
        f"WARNING: {what} took {seconds:.0f} s, {seconds / budget_s - 1:.0%} over its budget of "
        f"{budget_s:.0f} s in {where.relative_to(REPO)}: see the --durations list above for the "
        "slowest tests; if the growth is deliberate, record the new figure there in the same change"
    )


def report(
    target: str, phases_file: Path = PHASES_FILE, budget_file: Path = BUDGET_FILE
) -> list[str]:
    """The table (as lines) of this run's phases against the budget; WARNING lines for overruns."""
    budget, tolerance = load_budget(target, budget_file)
    records = [json.loads(line) for line in phases_file.read_text().splitlines() if line.strip()]
    lines = [f"make {target}: wall time per phase (budget: {budget_file.relative_to(REPO)})",
             f"{'phase':<15}{'seconds':>8}{'budget':>8}{'ratio':>7}  tests", "-" * 66]  # fmt: skip
    warnings, total = [], 0.0
    for record in records:
        name, seconds = record["phase"], float(record["seconds"])
        total += seconds
        budget_s = budget["phases"].get(name)
        ratio = f"{seconds / budget_s:.2f}" if budget_s else "-"
        flag = "" if record["rc"] == 0 else f"  exit {record['rc']}"
        tests = _tests_column(record.get("counts"))
        lines.append(f"{name:<15}{seconds:>8.0f}{budget_s or '-':>8}{ratio:>7}  {tests}{flag}")
        for folder, test_s in ((record.get("counts") or {}).get("folders") or {}).items():
            lines.append(f"  {folder:<28}{test_s:>6.0f} s of test time")
        if over_budget(seconds, budget_s, tolerance):
            warnings.append(_warning(f"phase {name}", seconds, budget_s, budget_file))
    total_budget = budget.get("total")
    lines += ["-" * 66, f"{'total':<15}{total:>8.0f}{total_budget or '-':>8}"]
    if over_budget(total, total_budget, tolerance):
        warnings.append(_warning(f"make {target}", total, total_budget, budget_file))
    counted = [r["counts"] for r in records if r.get("counts")]
    if counted:  # the plain closing line a CI log reader looks for
        failed = sum(c["failures"] + c["errors"] for c in counted)
        passed = sum(c["tests"] for c in counted) - failed - sum(c["skipped"] for c in counted)
        warnings.append(
            f"tests: {passed} passed, {failed} failed, {sum(c['skipped'] for c in counted)} skipped"
        )
    return [line.rstrip() for line in lines] + warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("reset", help="forget the previous run's phases")
    run = sub.add_parser("run", help="time one phase: run NAME -- COMMAND...")
    run.add_argument("name")
    run.add_argument("command", nargs=argparse.REMAINDER)
    rep = sub.add_parser("report", help="this run's phases against ci/test-budget.json")
    rep.add_argument("--target", default="test", help="the make target whose budget applies")
    args = parser.parse_args(argv)
    if args.action == "reset":
        PHASES_FILE.unlink(missing_ok=True)
        return 0
    if args.action == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            parser.error("run NAME -- COMMAND...")
        return run_phase(args.name, command)
    if not PHASES_FILE.exists():
        print(f"no phases recorded in {PHASES_FILE}", file=sys.stderr)
        return 0
    print("\n".join(report(args.target)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
