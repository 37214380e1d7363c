"""Evaluate (the gate) and score end to end: real training runs registered in the embedded MLflow,
the step CLI as the local runtime runs it, scores written to the local S3 endpoint.

Order matters (module-scoped state, as a customer's successive DAG runs): the first candidate
becomes champion, a weak one is refused and the champion keeps scoring, the skip policy scores
nothing, force_promote moves the alias; then scoring survives a kill mid-write, an operator rolls
back to a version that passed (a pinned run), and a tampered champion is refused.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from datasteps_helpers import PIPELINE, TENANT
from test_train import BIN, DATA_DATE, REGISTERED, env_for, ingest, train, train_lake  # noqa: F401

from embedded.services import create_bucket
from mlplatform_contract.layout import CustomerLayout
from mlplatform_contract.results import MonitoredRun
from mlplatform_contract.settings import CustomerSettings
from model_steps import champion, registry_admin, rollback
from model_steps.contract import EXIT_SKIP_DOWNSTREAM, StepContext, run_key

pytest.importorskip("mlflow")

TRAINING = {"epochs": 4, "batch_size": 128, "learning_rate": 0.002, "warmup_epochs": 1,
            "holdout_fraction": 0.2, "seed": 42}  # fmt: skip
GATE = {"metric": "roc_auc", "min_improvement": 0.0, "thresholds": {"roc_auc": 0.6},
        "on_fail": "score_with_champion"}  # fmt: skip
SCORES_BUCKET = "mlops-scores"


def step(
    name: str, lake: Path, tmp: Path, services: dict, run_id: str, *, gate: dict | None = None,
    params: dict | None = None, scoring: dict | None = None,
) -> tuple[int, dict | None, str]:  # fmt: skip
    xcom = tmp / f"{name}-{run_id}.json"
    xcom.unlink(missing_ok=True)
    env = env_for(lake, xcom, services, TRAINING)
    config = {
        "training": TRAINING,
        "gate": gate or GATE,
        "scoring": scoring or {"chunk_rows": 1000},
    }
    env.update({"STEP_CONFIG": json.dumps(config), "STEP_PARAMS": json.dumps(params or {}),
                "SCORES_URI": f"s3://{SCORES_BUCKET}"})  # fmt: skip
    proc = subprocess.run(
        [str(BIN / "python"), "-m", "model_steps", name, "--pipeline", PIPELINE, "--customer", TENANT,
         "--run-id", run_id, "--data-date", DATA_DATE.isoformat()],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return (
        proc.returncode,
        json.loads(xcom.read_text()) if xcom.exists() else None,
        proc.stdout + proc.stderr,
    )


@pytest.fixture(scope="module")
def world(train_lake, mlflow_services, tmp_path_factory):  # noqa: F811 (fixture from test_train)
    create_bucket(mlflow_services["s3_endpoint"], SCORES_BUCKET)
    # this process reads S3 and MLflow too, for this module's tests only: the services' endpoint
    # left in the worker's environment sent later tests' boto3 clients (moto's in-process mock) to
    # the shared local S3 endpoint instead
    with pytest.MonkeyPatch.context() as env:
        for key, value in mlflow_services["env"].items():
            env.setenv(key, value)
        yield train_lake, tmp_path_factory.mktemp("gate"), mlflow_services


def trained(world, run_id: str) -> dict:
    lake, tmp, services = world
    ingest(lake, run_id)
    return train(lake, tmp, services, ranks=1, run_id=run_id, training=TRAINING)


def champion_version() -> str | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(REGISTERED, "champion").version)
    except MlflowException:
        return None


def registry_version(version: str):  # type: ignore[no-untyped-def]
    import mlflow

    return mlflow.MlflowClient().get_model_version(REGISTERED, version)


def customer_layout(lake: Path) -> CustomerLayout:
    return CustomerLayout(f"file://{lake}", PIPELINE, TENANT)


def read_scores(lake_run: str, customer: str = TENANT) -> tuple[dict, list]:
    """A committed scores table read through its manifest, as publish reads it."""
    import pyarrow.parquet as pq
    import s3fs

    fs = s3fs.S3FileSystem()
    root = f"{SCORES_BUCKET}/{PIPELINE}/customer={customer}/run={lake_run}"
    manifest = json.loads(fs.cat_file(f"{root}/_MANIFEST.json"))
    rows = []
    for part in manifest["files"]:
        with fs.open(f"{root}/{manifest['attempt']}/{part}", "rb") as fh:
            rows.extend(pq.read_table(fh).to_pylist())
    return manifest, rows


def test_first_candidate_becomes_champion_and_scores(world) -> None:
    lake, tmp, services = world
    first = trained(world, "run-gate-1")
    assert champion_version() is None
    rc, decision, log = step("evaluate", lake, tmp, services, "run-gate-1")
    assert rc == 0, log[-4000:]
    assert decision["passed"] and decision["promote"]
    assert "no champion yet" in " ".join(decision["reasons"])
    assert set(decision["candidate"]) >= {
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "lift_top_decile",
    }
    # the gate registered exactly the bytes train logged: their digest, its verdict, the lineage
    assert champion_version() == decision["candidate_version"]
    version = registry_version(decision["candidate_version"])
    assert version.run_id == first["mlflow_run_id"]
    assert (
        version.tags["mlops.model_digest"] == first["model_digest"] == decision["candidate_digest"]
    )
    assert version.tags["mlops.gate_verdict"] == "passed"
    assert version.tags["run_key"] == run_key("run-gate-1") and "roc_auc" in version.tags
    # the alias move is an audited event, once: a retry of the decided run appends nothing
    [event] = champion.history(customer_layout(lake))
    assert (event.from_version, event.to_version, event.actor) == (
        None, decision["candidate_version"], "gate")  # fmt: skip
    assert event.run_key == run_key("run-gate-1") and "no champion yet" in event.reason
    assert event.at.tzinfo is not None and event.customer == TENANT
    rc, again, log = step("evaluate", lake, tmp, services, "run-gate-1")
    assert rc == 0 and again == decision, log[-4000:]
    assert champion.history(customer_layout(lake)) == [event]
    report = Path(decision["report_uri"].removeprefix("file://"))
    assert "Gate PASSED" in report.read_text()
    assert {"roc.png", "pr.png", "calibration.png", "comparison.png"} <= {
        p.name for p in report.parent.iterdir()
    }
    champion_profile = (
        lake / "evaluation" / PIPELINE / f"customer={TENANT}" / "champion" / "feature_profile.json"
    )
    assert champion_profile.is_file()

    rc, scored, log = step("score", lake, tmp, services, "run-gate-1")
    assert rc == 0, log[-4000:]
    manifest, rows = read_scores(scored["output_uri"].rsplit("run=", 1)[1])
    # the population (features as of the data date) is scored, not the training table
    population = (
        lake / "population" / PIPELINE / f"customer={TENANT}" / f"run={run_key('run-gate-1')}"
    )
    committed = json.loads((population / "_MANIFEST.json").read_text())
    assert manifest["rows"] == len(rows) == committed["rows"] == scored["rows"]
    assert manifest["features_uri"] == f"file://{population}"
    assert {r["model_version"] for r in rows} == {decision["candidate_version"]}
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    assert len({r["diner_id"] for r in rows}) == len(rows)


def test_weak_candidate_is_refused_and_the_champion_keeps_scoring(world) -> None:
    lake, tmp, services = world
    before = champion_version()
    candidate = trained(world, "run-gate-2")
    strict = {**GATE, "min_improvement": 0.5}  # no model beats another by half an AUC
    rc, decision, log = step("evaluate", lake, tmp, services, "run-gate-2", gate=strict)
    assert rc == 0, log[-4000:]
    assert not decision["passed"] and decision["champion_version"] == before
    assert decision["scoring_model_uri"] == f"models:/{REGISTERED}/{before}"
    assert champion_version() == before != decision["candidate_version"]
    assert decision["champion"]["roc_auc"] > 0.6
    # a refused candidate is registered too, with its verdict (a rollback picks passed ones only)
    refused = registry_version(decision["candidate_version"])
    assert refused.tags["mlops.gate_verdict"] == "refused"
    assert refused.tags["mlops.model_digest"] == candidate["model_digest"]
    assert len(champion.history(customer_layout(lake))) == 1  # the alias did not move
    # a retry of the decided run reuses the decision instead of re-judging
    rc, again, _ = step("evaluate", lake, tmp, services, "run-gate-2", gate=strict)
    assert rc == 0 and again == decision


def test_skip_policy_skips_downstream(world) -> None:
    lake, tmp, services = world
    before = champion_version()
    trained(world, "run-gate-3")
    policy = {**GATE, "min_improvement": 0.5, "on_fail": "skip"}
    rc, result, log = step("evaluate", lake, tmp, services, "run-gate-3", gate=policy)
    assert rc == EXIT_SKIP_DOWNSTREAM, log[-4000:]
    assert result["skipped"] is True and "downstream steps are skipped" in result["reason"]
    assert champion_version() == before


def test_force_promote_moves_the_alias(world) -> None:
    lake, tmp, services = world
    candidate = trained(world, "run-gate-4")
    strict = {**GATE, "min_improvement": 0.5}
    rc, decision, log = step("evaluate", lake, tmp, services, "run-gate-4", gate=strict,
                             params={"force_promote": True})  # fmt: skip
    assert rc == 0 and decision["promote"], log[-4000:]
    assert champion_version() == decision["candidate_version"]
    assert registry_version(decision["candidate_version"]).run_id == candidate["mlflow_run_id"]
    last = champion.history(customer_layout(lake))[-1]
    assert (last.to_version, last.run_key) == (decision["candidate_version"], run_key("run-gate-4"))
    assert last.from_version == champion.history(customer_layout(lake))[-2].to_version
    assert "force_promote" in last.reason


def test_score_killed_mid_write_then_retried_gives_identical_output(world) -> None:
    import s3fs

    lake, tmp, services = world
    rc, reference, log = step(
        "score", lake, tmp, services, "run-gate-4", scoring={"chunk_rows": 1000}
    )
    assert rc == 0, log[-4000:]
    run_folder = reference["output_uri"].rsplit("run=", 1)[1]
    ref_manifest, ref_rows = read_scores(run_folder)

    env = env_for(lake, tmp / "killed.json", services, TRAINING)
    env.update({"STEP_CONFIG": json.dumps({"training": TRAINING, "scoring": {"chunk_rows": 20}}),
                "SCORES_URI": f"s3://{SCORES_BUCKET}"})  # fmt: skip
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "model_steps", "score", "--pipeline", PIPELINE, "--customer", TENANT,
         "--run-id", "run-gate-4", "--data-date", DATA_DATE.isoformat()],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    fs = s3fs.S3FileSystem()
    root = f"{SCORES_BUCKET}/{PIPELINE}/customer={TENANT}/run={run_folder}"
    deadline, killed = time.monotonic() + 120, False
    while time.monotonic() < deadline and proc.poll() is None:
        fs.invalidate_cache()
        attempts = [
            p for p in fs.ls(root) if "attempt=" in p and not p.endswith(ref_manifest["attempt"])
        ]
        if attempts and fs.ls(attempts[0]):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "the score run finished before it could be killed mid-write"
    # what readers see is still the last committed, complete output
    assert read_scores(run_folder) == (ref_manifest, ref_rows)

    rc, _, log = step("score", lake, tmp, services, "run-gate-4", scoring={"chunk_rows": 1000})
    assert rc == 0, log[-4000:]
    manifest, rows = read_scores(run_folder)
    assert rows == ref_rows and manifest["files"] == ref_manifest["files"]
    fs.invalidate_cache()
    left = sorted(p.rsplit("/", 1)[1] for p in fs.ls(root))
    assert left == sorted(["_MANIFEST.json", manifest["attempt"]])  # the killed attempt is gone


def test_rollback_to_a_passed_version_rescores_without_training(world) -> None:
    """An operator's pinned run (training DAG params model_version, make_champion, reason): the
    gate refuses versions that never passed, moves the alias back once with an audited event, and
    score scores with the pinned version; no training run is involved."""
    lake, tmp, services = world
    first = champion.history(customer_layout(lake))[0].to_version  # run-gate-1's, passed
    refused = step("evaluate", lake, tmp, services, "run-gate-2")[1]["candidate_version"]
    current = champion_version()
    ingest(lake, "run-rollback")
    events = champion.history(customer_layout(lake))
    for version, said in ((refused, "has gate verdict refused"), ("99", "does not exist")):
        params = {"model_version": version, "make_champion": True}
        rc, _, log = step("evaluate", lake, tmp, services, "run-rollback", params=params)
        assert rc == 3 and said in log and f"passed its gate: v{current} (" in log, log[-3000:]
    rc, _, log = step("evaluate", lake, tmp, services, "run-rollback",
                      params={"make_champion": True})  # fmt: skip
    assert rc == 2 and "name the version to roll back to" in log, log[-3000:]
    assert champion_version() == current and champion.history(customer_layout(lake)) == events

    params = {"model_version": first, "make_champion": True, "reason": "incident 42: bad scores"}
    rc, decision, log = step("evaluate", lake, tmp, services, "run-rollback", params=params)
    assert rc == 0 and decision["pinned"] and decision["promote"], log[-3000:]
    assert champion_version() == first
    last = champion.history(customer_layout(lake))[-1]
    assert (last.from_version, last.to_version, last.actor, last.reason) == (
        current, first, "operator", "incident 42: bad scores")  # fmt: skip
    profile = customer_layout(lake).champion_profile.removeprefix("file://")
    assert decision["profile_uri"].endswith(f"run={run_key('run-gate-1')}/feature_profile.json")
    assert json.loads(Path(profile).read_text()) == json.loads(
        Path(decision["profile_uri"].removeprefix("file://")).read_text()
    )
    rc, again, _ = step("evaluate", lake, tmp, services, "run-rollback", params=params)
    assert rc == 0 and again == decision
    assert len(champion.history(customer_layout(lake))) == len(events) + 1  # once per run

    rc, scored, log = step("score", lake, tmp, services, "run-rollback", params=params)
    assert rc == 0 and scored["pinned"] and scored["model_version"] == first, log[-3000:]
    _, rows = read_scores(scored["output_uri"].rsplit("run=", 1)[1])
    assert {r["model_version"] for r in rows} == {first}

    # a backfill: an old data date re-scored with a chosen version; the champion stays
    rc, backfill, log = step("score", lake, tmp, services, "run-gate-1",
                             params={"model_version": current})  # fmt: skip
    assert rc == 0 and backfill["model_version"] == current and backfill["pinned"], log[-3000:]
    _, rows = read_scores(backfill["output_uri"].rsplit("run=", 1)[1])
    assert {r["model_version"] for r in rows} == {current}
    assert champion_version() == first
    rc, _, log = step("score", lake, tmp, services, "run-gate-1", params={"model_version": refused})
    assert rc == 3 and "has gate verdict refused" in log, log[-3000:]


def monitored(version: str, verdict: str) -> MonitoredRun:
    return MonitoredRun(
        scored_run_key=f"scored-v{version}", data_date=DATA_DATE.isoformat(), rows=100,
        model_version=version, registered_model=REGISTERED, realized={"roc_auc": 0.8}, pushed={},
        uplift={"verdict": verdict},
    )  # fmt: skip


def test_an_automatic_rollback_is_audited_as_automatic_and_listed_by_the_cli(world) -> None:
    """The monitor's rollback request (model_steps.rollback, read from this registry and history)
    after a simulated harm verdict, carried out as the monitoring DAG's trigger form does: the gate
    records actor automatic; the same request again finds the champion moved and moves nothing.
    Then the versions CLI lists it all as the scorer's identity (its text layout and its refusal
    of the admin's identity: test_versions.py, without a server)."""
    lake, tmp, services = world
    now, before = champion_version(), champion.history(customer_layout(lake))[-1].from_version
    env = {"LAKE_URI": f"file://{lake}", "MLFLOW_TRACKING_URI": services["tracking_uri"]}
    ctx = StepContext(step="monitor", pipeline=PIPELINE, customer=TENANT, run_id="monitor-1",
                      data_date=DATA_DATE, env=env)  # fmt: skip
    loaded = SimpleNamespace(
        platform=CustomerSettings(monitoring={"auto_rollback": True}, gate=GATE),
        model=SimpleNamespace(task="binary_classification"),
    )
    held = [monitored(before, "no_effect_detected"), monitored(now, "no_effect_detected")]
    assert not rollback.request(ctx, loaded, held).requested
    request = rollback.request(ctx, loaded, [*held, monitored(now, "harm")])
    assert request.requested and (request.from_version, request.to_version) == (now, before)
    params = {"model_version": request.to_version, "make_champion": True,
              "reason": request.reason, "actor": "automatic",
              "replaces_version": request.from_version}  # fmt: skip
    # the conf mlplatform.rollback.rollback_conf gives the training DAG (tests/dags check it)
    rc, decision, log = step("evaluate", lake, tmp, services, "run-auto-rollback", params=params)
    assert rc == 0 and decision["promote"], log[-3000:]
    assert "pinned by the automatic: roll back" in decision["reasons"][0]
    last = champion.history(customer_layout(lake))[-1]
    assert (last.from_version, last.to_version, last.actor) == (now, before, "automatic")
    assert last.reason == request.reason and "uplift verdict harm" in last.reason
    # the same request seen twice (a second monitoring run): the champion moved, nothing happens
    rc, stale, log = step("evaluate", lake, tmp, services, "run-auto-stale", params=params)
    assert rc == EXIT_SKIP_DOWNSTREAM and stale["scoring_model_uri"] is None, log[-3000:]
    assert champion_version() == before and champion.history(customer_layout(lake))[-1] == last
    _versions_cli_lists_it(lake, tmp, services, current=before)


def _versions_cli_lists_it(lake: Path, tmp: Path, services: dict, current: str) -> None:
    identities = tmp / "identities.json"
    registry_admin.provision(services["tracking_uri"], [(PIPELINE, TENANT)], identities)
    scorer = f"scorer@{TENANT}"
    as_scorer = {"MLFLOW_TRACKING_USERNAME": scorer,
                 "MLFLOW_TRACKING_PASSWORD": json.loads(identities.read_text())[scorer]}  # fmt: skip
    env = {**env_for(lake, tmp / "unused.json", services), **as_scorer}
    cli = [str(BIN / "python"), "-m", "model_steps.versions", "--pipeline", PIPELINE,
           "--customer", TENANT]  # fmt: skip
    proc = subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = json.loads(proc.stdout)
    rows = {r["version"]: r for r in listed["versions"]}
    assert [v for v, r in rows.items() if r["champion"]] == [current]
    assert {r["verdict"] for r in rows.values()} == {"passed", "refused"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["digest"]) for r in rows.values())
    assert listed["history"][-1]["actor"] == "automatic"
    events = champion.history(customer_layout(lake))
    assert listed["history"] == [e.model_dump(mode="json") for e in events]


def test_a_tampered_champion_is_refused_by_score_naming_the_file(world, tmp_path) -> None:
    """An attacker with the run's EDIT (the trainer's identity, or anyone who can write the
    artifact store) overwrites the champion's weights: score recomputes the digest, refuses the
    model naming it, and nothing from the changed file is deserialized."""
    import mlflow

    lake, tmp, services = world
    version = registry_version(champion_version())
    client = mlflow.MlflowClient()
    local = Path(client.download_artifacts(version.run_id, "model/model.keras", str(tmp_path)))
    raw = bytearray(local.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    local.write_bytes(bytes(raw))
    client.log_artifact(version.run_id, str(local), "model")  # the run's artifact, overwritten
    rc, _, log = step("score", lake, tmp, services, "run-gate-4")
    assert rc != 0
    named = f"model {REGISTERED} v{version.version} (run {version.run_id}): file model.keras has"
    assert named in log and "the artifact was changed after it was written" in log, log[-4000:]
