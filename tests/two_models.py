"""One run of the example models through Airflow, shared by every control-plane test that reads
what a whole run leaves behind (tests/conftest.py's ``two_models`` fixture: named when there were
two; the third, preferred_channel, a LightGBM model with several classes, shares the run because a
fixture of its own would pay the platform, the data and a DAG's start-up again).

The embedded platform (embedded/platform.py: local S3 endpoint, MLflow server, CRM receiver,
Pushgateway where installed) comes up once; a small raw zone is generated; then each model's DAG runs
with ``airflow dags test`` (Airflow's own task runner, the factory's LocalStepOperators, every step
as ``python -m model_steps <step>`` in the workload venv), the DAGs side by side, each in its own
Airflow home copied from one migrated DB. The DAG is due on 2026-06-30 and given no data date, so
the scheduled default (the day before, 2026-06-29, the example data's last drop) is used.

Tests then read the run's metadata DB (task states, XCom results), its log, the lake, MLflow and
the CRM. The DAG modules name the real model packages with test-sized settings (few epochs, lenient
gates), which is what any data scientist's module does: nothing model-specific is in the platform.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from example_report import airflow_results  # noqa: E402

from embedded import services  # noqa: E402
from embedded.platform import CRM_TOKEN, airflow_env, base_env, embedded_platform  # noqa: E402

CUSTOMER = "acme-foods"
DUE = "2026-06-30"  # a run due then, with no data_date given, uses 2026-06-29 (landing delay 1)
STEPS_PY = REPO / ".venv-steps" / "bin" / "python"
AIRFLOW = REPO / ".venv" / "bin" / "airflow"

MODULE = '''
"""Airflow DAG module of {name} for the control-plane tests' shared run."""
from mlplatform import register_pipeline

register_pipeline(globals(), {{
    "name": "{name}", "model": "mlmodels.{name}", "task": "{task}",
    "owner": "test-team", "description": "{name} on tiny data.",
    "steps": {{"ingest": {{"retries": 0}}, "validate": {{"retries": 0}},
               "train": {{"retries": 0, "local_processes": 1}}, "evaluate": {{"retries": 0}},
               "score": {{"retries": 0}}, "publish": {{"retries": 0}}}},
    "extra_steps": {extra},
    "defaults": {defaults},
    "tiers": {{"t": {{}}}}, "customers": [{{"id": "{customer}", "tier": "t"}}],
}})
'''
CAMPAIGN = {
    "id": "spring-offers", "segment_column": "segment",
    "variants": [{"id": "pct10", "crm": {"discount_pct": 10}},
                 {"id": "pct20", "crm": {"discount_pct": 20}},
                 {"id": "dessert", "crm": {"treat": "dessert"}},
                 {"id": "retired", "crm": {"treat": "none"}, "retired": True}],
}  # fmt: skip
MODELS = {
    "customer_propensity": ("binary_classification", {}, {
        # the data settings of dags/customer_propensity.py: ingest and validate as in production
        "data": {"lookback_days": 365, "label_window_days": 14},
        "training": {"epochs": 5, "batch_size": 128, "learning_rate": 0.003},
        # plumbing, not quality (the gate's policy has its own tests): any candidate is promoted
        "gate": {"thresholds": {"roc_auc": 0.0}},
        "model": {"hidden_units": [16]},
        # offer variants allocated per segment (a feature of the population table)
        "crm": {"campaign": CAMPAIGN},
    }),
    "next_spend": ("regression", {"spend_report": {"after": "score", "runs_in": "score"}}, {
        "data": {"lookback_days": 180, "label_window_days": 28},
        "validation": {"label_rate_min": 0.0, "label_rate_max": 1.0},
        "training": {"epochs": 5, "batch_size": 128, "learning_rate": 0.003},
        "gate": {"thresholds": {"r2": -10.0}},
        "model": {"deep_units": [16], "vip_fraction": 0.1},
    }),
    "preferred_channel": ("multiclass_classification", {}, {
        "data": {"lookback_days": 180, "label_window_days": 28},
        "model": {"boosting_rounds": 20, "top_fraction": 0.2},
        "gate": {"thresholds": {"macro_f1": 0.0}},
    }),
}  # fmt: skip


def _imports() -> list[str]:
    return [f"mlmodels.{name}" for name in MODELS]


def workload_ready() -> bool:
    probe = [str(STEPS_PY), "-c", f"import pyspark, tensorflow, mlflow, {', '.join(_imports())}"]
    return STEPS_PY.exists() and subprocess.run(probe, capture_output=True).returncode == 0


@dataclass
class TwoModels:
    """The shared run: where it ran, what reaches its services, and what each DAG run left."""

    root: Path
    lake: Path
    env: dict[str, str]  # the platform settings every step got
    crm: str  # the CRM receiver's base URL
    crm_token: str
    runs: dict[str, dict[str, Any]]  # model -> airflow_results (state, tasks, run_id)
    logs: dict[str, str]  # model -> the `airflow dags test` output
    registry_admin: dict[str, str]  # the MLflow admin's credentials, for the tests' own reads

    def result(self, model: str, task: str) -> dict[str, Any]:
        return dict(self.runs[model]["tasks"][task]["result"])

    def results(self, model: str) -> dict[str, dict[str, Any]]:
        return {task: ti["result"] for task, ti in self.runs[model]["tasks"].items()}


def _write_modules(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (task, extra, defaults) in MODELS.items():
        # the defaults as Python literals (a campaign's `retired: True`), not JSON
        text = MODULE.format(name=name, task=task, extra=json.dumps(extra), customer=CUSTOMER,
                             defaults=repr(defaults))  # fmt: skip
        (folder / f"{name}.py").write_text(textwrap.dedent(text))


def _generate(lake: Path) -> None:
    """1,500 diners (seed 5): enough rows for each model's label and the VIP segment."""
    command = [str(STEPS_PY), "-m", "mlmodels.restaurant_chain.datagen", "--customer", CUSTOMER,
               "--lake", lake.as_uri(), "--diners", "1500", "--seed", "5"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env=base_env())


def _dags_test(model: str, env: dict[str, str], home: Path) -> tuple[dict[str, Any], str]:
    dag_id = f"{model}__{CUSTOMER}"
    module = Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{model}.py"  # parse only its own module
    done = subprocess.run(
        [str(AIRFLOW), "dags", "test", dag_id, DUE, "--dagfile-path", str(module)],
        env={**env, "AIRFLOW_HOME": str(home)}, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    log = done.stdout + done.stderr
    (home / "dags_test.log").write_text(log)
    return airflow_results(home / "airflow.db", dag_id), log


@contextmanager
def two_models_run(root: Path, airflow_home: Callable[[Path], Path]) -> Iterator[TwoModels]:
    """Bring the platform up under ``root``, run the DAGs side by side, tear down on exit."""
    _generate(root / "lake")
    _write_modules(root / "dags")
    with embedded_platform(
        root, [CUSTOMER], log=lambda _: None, dags_folder=root / "dags"
    ) as platform:
        env = {**base_env(), **airflow_env(root / "dags"), **platform.env}
        env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW__DATABASE")}
        with ThreadPoolExecutor(max_workers=len(MODELS)) as pool:
            futures = {
                m: pool.submit(_dags_test, m, env, airflow_home(root / "airflow" / m))
                for m in MODELS
            }
            done = {m: f.result() for m, f in futures.items()}
        yield TwoModels(
            root=root, lake=platform.lake, env=platform.env, crm=platform.crm_url,
            crm_token=CRM_TOKEN, runs={m: r for m, (r, _) in done.items()},
            logs={m: log for m, (_, log) in done.items()},
            registry_admin=services.admin_env(root / "services"),
        )  # fmt: skip


def assert_succeeded(run: TwoModels) -> None:
    for model, results in run.runs.items():
        states = {t: ti["state"] for t, ti in results["tasks"].items()}
        assert results["state"] == "success", f"{model}: {states}\n{run.logs[model][-6000:]}"
