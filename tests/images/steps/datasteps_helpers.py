"""Helpers of the workload data tests (a module with a unique name: every test folder of the repo
has a conftest.py, so tests import helpers from here, never from ``conftest``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from mlmodels.restaurant_chain import datagen
from model_steps import cli

TENANT = "acme-foods"
PIPELINE = "customer_propensity"
# what the control plane puts in STEP_MODEL for each example model (dags/<name>.py)
MODELS = {
    "customer_propensity": {"ref": "mlmodels.customer_propensity", "task": "binary_classification"},
    "next_spend": {"ref": "mlmodels.next_spend", "task": "regression"},
}


def model_env(pipeline: str = PIPELINE) -> dict[str, str]:
    return {"STEP_MODEL": json.dumps({**MODELS[pipeline], "source": f"dags/{pipeline}.py"})}


RUN_ID = "manual__2026-06-29T00:00:00+00:00"
DATA_DATE = datagen.DEFAULT_DATA_DATE
TINY_DINERS = 600


def raw_checksums(lake_root: Path) -> dict[str, str]:
    raw = lake_root / "raw"
    return {
        str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(raw.rglob("*"))
        if p.is_file()
    }


def run_chain(
    lake_root: Path,
    tmp: Path,
    steps=("ingest", "validate"),
    config: dict | None = None,
    caplog: Any = None,
    data_date: dt.date = DATA_DATE,
    pipeline: str = PIPELINE,
) -> list[dict[str, Any]]:
    """Run steps in order through the CLI entry point in this process (the shared SparkSession is
    reused), stopping at the first that does not exit 0, like the DAG's dependencies."""
    results = []
    env = {
        "LAKE_URI": f"file://{lake_root}",
        "STEP_CONFIG": json.dumps(config or {}),
        **model_env(pipeline),
    }
    for step in steps:
        xcom = tmp / f"xcom-{step}.json"
        old = {k: os.environ.get(k) for k in (*env, "STEP_XCOM_PATH")}
        os.environ.update(env, STEP_XCOM_PATH=str(xcom))
        if caplog is not None:
            caplog.clear()
        try:
            with caplog.at_level(logging.INFO) if caplog is not None else _null():
                rc = cli.main(
                    [
                        step,
                        "--pipeline",
                        pipeline,
                        "--customer",
                        TENANT,
                        "--run-id",
                        RUN_ID,
                        "--data-date",
                        data_date.isoformat(),
                    ]
                )
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        errors = (
            [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] if caplog else []
        )
        results.append(
            {
                "step": step,
                "rc": rc,
                "xcom": json.loads(xcom.read_text()) if xcom.exists() else None,
                "error": "\n".join(errors),
            }
        )
        if rc != 0:
            break
    return results


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def features_lake(small_features_lake: Path, tmp: Path) -> Path:
    """A private copy of the session's ingested small lake (conftest.small_features_lake)."""
    root = tmp / "lake"
    shutil.copytree(small_features_lake, root)
    return root
