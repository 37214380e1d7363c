"""Helpers of the publish tests and benchmark: a scores table written the way the score step commits
it, a local CRM receiver in a subprocess, and the publish CLI as the runtimes run it."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from datasteps_helpers import model_env

from model_steps import lake
from model_steps.contract import StepContext, run_key
from model_steps.scoring import scores_table_uri

REPO = Path(__file__).resolve().parents[3]
PIPELINE = "customer_propensity"
TENANT = "acme-foods"
DATA_DATE = "2026-06-29"
TOKEN = "test-token-7f3a9c2e51b84d06"


def write_scores(
    lake_uri: str, run_id: str, n: int, parts: int = 2, model_version: str = "7"
) -> str:
    """Commit a scores table of ``n`` diners (deterministic scores, some ties) for ``run_id``."""
    import pyarrow as pa

    ids = [f"d{i:07d}" for i in range(n)]
    scores = [round(((i * 7919) % 1000) / 1000, 3) for i in range(n)]  # 1000 distinct values: ties
    # the columns and types the score step writes (model_version dictionary-encoded)
    version = pa.DictionaryArray.from_arrays(
        pa.array([0] * n, pa.int32()), pa.array([model_version])
    )
    table = pa.table(
        {
            "diner_id": pa.array(ids, pa.string()),
            "score": pa.array(scores, pa.float64()),
            "model_version": version,
        }
    )
    uri = scores_uri(lake_uri, run_id)
    step = -(-n // parts) if n else 1
    chunks = [table.slice(i, step) for i in range(0, max(n, 1), step)]
    lake.commit_parquet_table(uri, chunks, {"table": "scores", "run_id": run_id})
    return uri


def scores_uri(lake_uri: str, run_id: str) -> str:
    """The scores table of a run, named by the score step's own helper."""
    ctx = StepContext(step="score", pipeline=PIPELINE, customer=TENANT, run_id=run_id,
                      data_date=dt.date.fromisoformat(DATA_DATE), env={"LAKE_URI": lake_uri})  # fmt: skip
    return scores_table_uri(ctx)


def expected_top(n: int, fraction: float) -> list[str]:
    """The diners the model selects (the top ``fraction`` by score), best first."""
    import math

    scores = {f"d{i:07d}": round(((i * 7919) % 1000) / 1000, 3) for i in range(n)}
    ranked = sorted(scores, key=lambda d: (-scores[d], d))
    return ranked[: min(n, max(1, math.ceil(fraction * n)))]


def expected_sent(n: int, fraction: float, run_id: str, control_fraction: float = 0.1) -> list[str]:
    """The selected diners minus the control arm publish holds back for this run."""
    from model_steps.campaign import held_out

    top = expected_top(n, fraction)
    identity = f"{PIPELINE}/{TENANT}/{run_key(run_id)}"
    return [d for d, c in zip(top, held_out(top, identity, control_fraction), strict=True) if not c]


class Receiver:
    """``python -m embedded.crm_receiver`` on a free loopback port."""

    def __init__(self, db: Path, token: str = TOKEN, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embedded.crm_receiver", "--db", str(db), "--port", "0",
             "--token", token, *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise RuntimeError(f"receiver did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].split()[0]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def control(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/_control", changes)

    def reset(self) -> None:
        self.control(reset=True, fail_next=0, fail_status=429, retry_after=None, delay_ms=0,
                     drop_ack_next=0)  # fmt: skip

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_stats")

    def contacts(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/contacts?limit=100000")["records"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# what the propensity model decides (its model: section); the rest of a test's config is crm.*
MODEL_KEYS = ("top_fraction", "offer_code")


def step_config(config: dict[str, Any]) -> dict[str, Any]:
    """A test's flat publish config split into the crm and model sections, as the spec layers it."""
    crm = {k: v for k, v in config.items() if k not in MODEL_KEYS}
    return {"crm": crm, "model": {k: v for k, v in config.items() if k in MODEL_KEYS}}


def publish_env(lake_uri: str, crm_url: str, xcom: Path, config: dict[str, Any],
                token: str = TOKEN) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "STEP_", "SCORES_"))}
    env.update(model_env())
    env.update(
        LAKE_URI=lake_uri,
        CRM_BASE_URL=crm_url,
        CRM_API_TOKEN=token,
        STEP_CONFIG=json.dumps(step_config(config)),
        STEP_PARAMS="{}",
        STEP_XCOM_PATH=str(xcom),
        PYTHONUNBUFFERED="1",
    )
    return env


def publish_argv(run_id: str) -> list[str]:
    return [sys.executable, "-m", "model_steps", "publish", "--pipeline", PIPELINE,
            "--customer", TENANT, "--run-id", run_id, "--data-date", DATA_DATE]  # fmt: skip


def run_publish(env: dict[str, str], run_id: str, timeout: float = 60) -> tuple[int, str, Any]:
    """(exit code, combined output, XCom result or None) of one CLI run."""
    xcom = Path(env["STEP_XCOM_PATH"])
    xcom.unlink(missing_ok=True)
    proc = subprocess.run(publish_argv(run_id), env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    result = json.loads(xcom.read_text()) if xcom.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, result


def wait_for(predicate: Any, timeout: float = 20, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(every)
