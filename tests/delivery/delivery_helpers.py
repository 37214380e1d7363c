"""Helpers shared by the delivery checks (images, CI, Terraform, Helm), all offline.

The validators live in .venv-delivery (make delivery-tools) and tools/bin/helm; terraform is taken from
PATH. A missing tool FAILS the test that needs it (never skips): a green run means every check ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DELIVERY_VENV = REPO / ".venv-delivery"
DELIVERY_BIN = DELIVERY_VENV / "bin"
HCL2_LIB = DELIVERY_VENV / "hcl2-lib"
HELM = REPO / "tools" / "bin" / "helm"
STEP_KINDS = ("ingest", "validate", "train", "evaluate", "score", "publish")
STEPS_NAMESPACE = "ml-steps"
AIRFLOW_NAMESPACE = "airflow"
K8S_VERSION = "1.33.0"
CHARTS = ("platform", "mlflow")
INSTALL_HINT = "run `make delivery-tools` (installs .venv-delivery and tools/bin/helm)"


def tool(name: str) -> str:
    """Path of a delivery tool; fails the calling test when it is not installed."""
    if name == "helm":
        path = HELM
    elif name == "terraform":
        found = shutil.which("terraform")
        if found is None:
            pytest.fail("terraform is not on PATH (CI: sh ci/install-terraform.sh)")
        return found
    else:
        path = DELIVERY_BIN / name
    if not path.exists():
        pytest.fail(f"{name} missing at {path}: {INSTALL_HINT}")
    return str(path)


def run(cmd: list[str], *, timeout: int = 300, env: dict[str, str] | None = None, cwd: Path = REPO):
    """Run a tool; returns CompletedProcess (text). Callers assert on returncode with the output."""
    full_env = {**os.environ, "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", **(env or {})}
    return subprocess.run(
        cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def output_of(proc) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr ---\n{proc.stderr[-4000:]}"
    )


def report(what: str, summary: dict) -> None:
    """One line per checkov run in the test output (pytest -s / -rA shows it)."""
    print(
        f"checkov {what}: passed={summary['passed']} failed={summary['failed']} skipped={summary['skipped']}"
    )


def checkov(target: list[str], framework: str) -> dict:
    """Run checkov offline on files/dirs; return the summary plus every failed and skipped check."""
    proc = run(
        [
            tool("checkov"),
            *target,
            "--framework",
            framework,
            "--skip-download",
            "--compact",
            "-o",
            "json",
            "--soft-fail",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, output_of(proc)
    raw = json.loads(proc.stdout) if proc.stdout.strip() else []
    reports = raw if isinstance(raw, list) else [raw]
    summary = {"passed": 0, "failed": 0, "skipped": 0, "failed_checks": [], "skipped_checks": []}
    for report in reports:
        if "summary" not in report:  # "no files found" style output
            continue
        summary["passed"] += report["summary"]["passed"]
        summary["failed"] += report["summary"]["failed"]
        summary["skipped"] += report["summary"]["skipped"]
        results = report.get("results", {})
        summary["failed_checks"] += results.get("failed_checks", [])
        summary["skipped_checks"] += results.get("skipped_checks", [])
    return summary


def describe_failures(summary: dict) -> str:
    return "\n".join(
        f"{c['check_id']} {c.get('check_name', '')} :: {c.get('resource')} ({c.get('file_path')})"
        for c in summary["failed_checks"]
    )


def assert_checkov_clean(summary: dict, min_passed: int) -> None:
    """Hard fail on any failed check; every waiver must carry a written reason."""
    assert summary["failed"] == 0, describe_failures(summary)
    assert summary["passed"] >= min_passed, f"checkov ran too few checks: {summary['passed']}"
    unexplained = [
        f"{c['check_id']} on {c.get('resource')}"
        for c in summary["skipped_checks"]
        if len((c.get("check_result", {}).get("suppress_comment") or "").strip()) < 15
    ]
    assert not unexplained, f"waivers without a reason: {unexplained}"


def load_yaml_docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def render_charts(out: Path) -> dict[str, Path]:
    """helm template of each chart (default values) into its own file under out; chart -> path."""
    paths = {}
    for chart in CHARTS:
        proc = run(
            [
                tool("helm"),
                "template",
                chart,
                str(REPO / "helm" / chart),
                "--namespace",
                STEPS_NAMESPACE,
            ]
        )
        assert proc.returncode == 0, output_of(proc)
        path = out / f"{chart}.yaml"
        path.write_text(proc.stdout)
        paths[chart] = path
    return paths


def parse_charts(paths: dict[str, Path]) -> dict[str, list[dict]]:
    return {chart: load_yaml_docs(path.read_text()) for chart, path in paths.items()}


# ---- upstream reference files (../shared/vendor) ------------------------------------------------

VENDOR_ENV = "MLOPS_VENDOR_DIR"
AIRFLOW_CHART_VERSION = "1.21.0"
AIRFLOW_VALUES = REPO / "helm" / "airflow" / "values.yaml"
AIRFLOW_COMPONENTS = ("workers", "scheduler", "triggerer", "dagProcessor", "apiServer")


def _vendor_candidates() -> list[Path]:
    """$MLOPS_VENDOR_DIR, else ../shared/vendor beside this checkout, else beside its main worktree."""
    if os.environ.get(VENDOR_ENV):
        return [Path(os.environ[VENDOR_ENV])]
    candidates = [REPO.parent / "shared" / "vendor"]
    proc = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode == 0 and proc.stdout.strip():
        main_checkout = Path(proc.stdout.strip()).parent
        candidates.append(main_checkout.parent / "shared" / "vendor")
    return candidates


def vendored(relative: str) -> Path:
    """Path of an upstream reference file under ../shared/vendor (see its README).

    Absent outside CI (a fresh clone without ../shared), the calling test is skipped with the paths
    it looked at; under CI=true the file must be there, so the test fails instead of passing unseen.
    """
    tried = [c / relative for c in _vendor_candidates()]
    for path in tried:
        if path.exists():
            return path
    message = (
        f"upstream reference {relative!r} not found at {', '.join(map(str, tried))}: clone the "
        f"project's shared/ folder beside the checkout or set {VENDOR_ENV}"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def airflow_service_account(values: dict, component: str) -> dict:
    """A component's serviceAccount section; KubernetesExecutor workers keep theirs in workers.kubernetes."""
    section = values[component]
    return (
        section["kubernetes"]["serviceAccount"]
        if component == "workers"
        else section["serviceAccount"]
    )
