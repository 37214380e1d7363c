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
MLFLOW_NAMESPACE = "mlflow"
SPARK_NAMESPACE = "ml-spark"
# The namespace each chart is installed into (docs/deploy.md).
CHART_NAMESPACES = {"platform": STEPS_NAMESPACE, "mlflow": MLFLOW_NAMESPACE}
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
                CHART_NAMESPACES[chart],
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


# ---- Pod Security Standards, `restricted` profile ------------------------------------------------
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.33): the fields the profile
# checks, as a reviewer reads them, for pods the platform creates in namespaces enforcing it.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip


def restricted_violations(spec: dict) -> list[str]:
    """Why a pod spec would be refused by Pod Security `restricted` (empty: admitted)."""
    found, pod_sc = [], spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            found.append(flag)
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {v['name']}: {sorted(kinds)}")
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    for c in containers:
        sc, name = c.get("securityContext") or {}, c["name"]
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation not false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{name}: capabilities not dropping ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {caps['add']}")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot not true")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp}")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            found.append(f"{name}: hostPort")
    return found
