"""Publish step (CRM): batches, retries, idempotency, checkpoint/resume, credentials, errors.

Runs the step through its CLI (``python -m model_steps publish``, as both runtimes do) against the
local CRM receiver (``python -m embedded.crm_receiver``) in a subprocess on loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.compute as pc
import pytest
from publish_helpers import (
    PIPELINE,
    TENANT,
    TOKEN,
    Receiver,
    expected_sent,
    expected_top,
    model_env,
    publish_argv,
    publish_env,
    run_publish,
    scores_uri,
    step_config,
    wait_for,
    write_scores,
)

from mlplatform_contract.results import PublishResult
from model_steps import contact_claims, lake, metrics, scoring
from model_steps.contract import StepContext, StepError, run_key
from model_steps.crm import CrmClient, CrmError, mask, parse_retry_after, redact_url
from model_steps.serving import FramePredictor
from model_steps.steps import publish

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    r = Receiver(tmp_path_factory.mktemp("crm") / "crm.sqlite")
    yield r
    r.stop()


@pytest.fixture
def crm(receiver: Receiver) -> Receiver:
    receiver.reset()
    return receiver


@pytest.fixture
def lake_uri(tmp_path: Path) -> str:
    return f"file://{tmp_path}/lake"


def progress(lake_uri: str, run_id: str) -> dict | None:
    uri = lake.join(lake_uri, "publish", PIPELINE, f"customer={TENANT}", f"run={run_key(run_id)}",
                    "progress.json")  # fmt: skip
    return lake.read_json(uri) if lake.exists(uri) else None


def assert_exactly_once(crm: Receiver, expected_ids: list[str]) -> None:
    stats = crm.stats()
    ids = [r["contact_id"] for r in crm.contacts()]
    assert sorted(ids) == sorted(expected_ids)  # none missing, none extra
    assert stats["contacts"] == len(expected_ids)
    assert stats["duplicate_writes"] == 0 and stats["max_writes_per_contact"] == 1, stats


def test_happy_path_top_fraction_batches_and_a_retry_sends_nothing(crm, lake_uri, tmp_path):
    run_id = "manual__2026-06-29T00:00:00+00:00"
    write_scores(lake_uri, run_id, n=1000)
    cfg = {"batch_size": 50, "max_concurrency": 3, "top_fraction": 0.2, "offer_code": "summer-10"}
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json", cfg)
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    sent = expected_sent(1000, 0.2, run_id)  # the top 20% minus the control arm
    assert result["selected"] == 200 and result["scored_rows"] == 1000
    assert result["records"] == len(sent) == result["arms"]["treated"]
    assert result["arms"]["control"] == 200 - len(sent) > 0
    assert result["batches"] == result["sent_batches"] == -(-len(sent) // 50)
    assert result["skipped_batches"] == 0 and result["retries"] == 0
    assert_exactly_once(crm, sent)
    record = crm.contacts()[0]
    assert record["offer_code"] == "summer-10" and record["model_version"] == "7"
    assert record["model"] == PIPELINE and isinstance(record["propensity_score"], float)
    assert record["run_key"] == run_key(run_id)
    assert progress(lake_uri, run_id)["complete"] is True
    assert result["checkpoint_uri"].endswith("/progress.json")
    assert TOKEN not in out

    code, out, again = run_publish(env, run_id)  # Airflow retries a succeeded task: no resend
    assert code == 0, out
    assert again["sent_batches"] == 0 and again["skipped_batches"] == 4
    assert again["skipped_records"] == len(sent)
    assert crm.stats()["counters"]["requests"] == result["batches"]


def test_killed_half_way_then_retried_every_diner_exactly_once(crm, lake_uri, tmp_path):
    run_id = "scheduled__2026-06-29T00:00:00+00:00"
    n = 2000
    write_scores(lake_uri, run_id, n=n)
    cfg = {"batch_size": 50, "max_concurrency": 2, "top_fraction": 1.0,
           "checkpoint_interval_seconds": 0}  # fmt: skip
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json", cfg)
    crm.control(delay_ms=120)  # a slow CRM: 40 batches take ~2.4 s
    proc = subprocess.Popen(publish_argv(run_id), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: (progress(lake_uri, run_id) or {}).get("acked_batches", 0) >= 8)
    finally:
        proc.send_signal(signal.SIGKILL)  # no chance to save anything more
        proc.wait(timeout=10)
    saved = progress(lake_uri, run_id)
    assert saved["complete"] is False
    stats = crm.stats()
    assert 8 * 50 <= stats["contacts"] < n  # really half-way
    # Batches the killed run had on the wire may still land now: the retry must cope either way.
    crm.control(delay_ms=0)

    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    assert result["skipped_batches"] >= saved["acked_batches"] >= 8
    sent = expected_sent(n, 1.0, run_id)
    assert result["sent_batches"] + result["skipped_batches"] == result["batches"]
    assert result["batches"] == -(-len(sent) // 50)
    assert result["skipped_records"] + result["sent_records"] == len(sent)
    assert_exactly_once(crm, sent)
    assert progress(lake_uri, run_id)["complete"] is True


def test_sigterm_saves_progress_and_exits_1_then_resumes(crm, lake_uri, tmp_path):
    run_id = "manual__2026-06-30T00:00:00+00:00"
    write_scores(lake_uri, run_id, n=1200)
    cfg = {
        "batch_size": 40,
        "max_concurrency": 2,
        "top_fraction": 1.0,
        "checkpoint_interval_seconds": 60,
    }  # only the SIGTERM handler saves in this window
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json", cfg)
    crm.control(delay_ms=150)  # 30 batches, 2 in flight: >= 2.2 s, SIGTERM comes well before
    proc = subprocess.Popen(publish_argv(run_id), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    wait_for(lambda: crm.stats()["batches"] >= 6)
    proc.send_signal(signal.SIGTERM)  # what Airflow's on_kill and a pod deletion send
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1, out
    assert "terminated (SIGTERM)" in out
    saved = progress(lake_uri, run_id)
    assert saved is not None and saved["complete"] is False
    # everything the CRM acknowledged to the step is in the checkpoint (in-flight ones were awaited)
    assert saved["acked_batches"] >= 6
    crm.control(delay_ms=0)
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    assert result["skipped_batches"] == saved["acked_batches"]
    assert_exactly_once(crm, expected_sent(1200, 1.0, run_id))


@pytest.mark.parametrize(
    ("status", "retry_after"), [(429, 1.0), (500, None)], ids=["429-retry-after", "500"]
)
def test_crm_answering_429_or_500_for_a_while_still_completes(
    crm, lake_uri, tmp_path, status, retry_after
):
    run_id = f"manual__fault-{status}"
    write_scores(lake_uri, run_id, n=600)
    crm.control(fail_next=5, fail_status=status, retry_after=retry_after)
    cfg = {"batch_size": 30, "max_concurrency": 4, "top_fraction": 0.5}
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json", cfg)
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    assert result["retries"] == 5 and result["retries_by_reason"] == {str(status): 5}
    assert crm.stats()["counters"]["faults"] == 5
    if retry_after:  # Retry-After honoured: the retried batches waited the server's second
        assert result["seconds"] >= 1.0
        assert "(Retry-After)" in out
    assert_exactly_once(crm, expected_sent(600, 0.5, run_id))


def test_a_retry_with_other_settings_resends_but_never_duplicates_a_diner(crm, lake_uri, tmp_path):
    run_id = "manual__changed-plan"
    write_scores(lake_uri, run_id, n=300)
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json",
                      {"batch_size": 50, "top_fraction": 1.0})  # fmt: skip
    assert run_publish(env, run_id)[0] == 0
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json",
                      {"batch_size": 40, "top_fraction": 1.0})  # fmt: skip
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    assert "written for other scores or settings" in out
    sent = expected_sent(300, 1.0, run_id)
    assert result["skipped_batches"] == 0 and result["sent_records"] == len(sent)
    stats = crm.stats()
    assert stats["contacts"] == len(sent) and stats["max_writes_per_contact"] == 2  # upserted
    # the old plan's keys are dropped
    assert len(progress(lake_uri, run_id)["acked"]) == -(-len(sent) // 40)


def test_lost_acknowledgements_are_replayed_not_applied_twice(crm, lake_uri, tmp_path):
    run_id = "manual__lost-acks"
    write_scores(lake_uri, run_id, n=400)
    crm.control(drop_ack_next=2)  # applied, then the connection closes without an answer
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json",
                      {"batch_size": 25, "top_fraction": 1.0})  # fmt: skip
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    assert result["replayed_batches"] == 2 and result["retries_by_reason"] == {"network": 2}
    assert crm.stats()["counters"]["replayed"] == 2
    assert_exactly_once(crm, expected_sent(400, 1.0, run_id))


def test_bad_token_fails_clearly_without_showing_the_token(crm, lake_uri, tmp_path):
    run_id = "manual__bad-token"
    write_scores(lake_uri, run_id, n=300)
    wrong = "wrong-token-5ecr3t-c0ffee"
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json", {"batch_size": 20}, token=wrong)
    code, out, result = run_publish(env, run_id)
    assert code == 1
    assert "refused the credentials (HTTP 401" in out and "CRM_API_TOKEN" in out
    assert wrong not in out and result is None
    assert crm.stats()["contacts"] == 0
    assert crm.stats()["counters"]["unauthorized"] <= 4  # stops at once, no retry storm


def test_missing_scores_manifest_is_a_clear_error(crm, lake_uri, tmp_path):
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json", {})
    code, out, result = run_publish(env, "manual__never-scored")
    assert code == 1 and result is None
    assert "no scores to publish" in out and "_MANIFEST.json" in out
    assert "customer=acme-foods/run=manual__never-scored" in out
    assert crm.stats()["counters"]["requests"] == 0


# --- in-process units -----------------------------------------------------------------------


def context(lake_uri: str, env: dict[str, str], run_id: str = "r1", **crm_cfg) -> StepContext:
    return StepContext(
        step="publish", pipeline=PIPELINE, customer=TENANT, run_id=run_id,
        data_date=dt.date(2026, 6, 29), config=step_config(crm_cfg),
        env={"LAKE_URI": lake_uri, **model_env(), **env},
    )  # fmt: skip


def test_missing_credentials_name_the_variables_and_the_connection(lake_uri):
    with pytest.raises(StepError, match=r"CRM_BASE_URL and CRM_API_TOKEN not set.*crm_default"):
        publish.run(context(lake_uri, {}))


def test_a_token_that_cannot_be_a_header_is_refused_without_echoing_it(lake_uri):
    env = {"CRM_BASE_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "abc\r\nX-Evil: 1"}
    with pytest.raises(StepError, match="CRM_API_TOKEN contains whitespace") as err:
        publish.run(context(lake_uri, env))
    assert "abc" not in str(err.value)
    assert (
        publish.credentials({**env, "CRM_API_TOKEN": "tok\n"}, "c")[1] == "tok"
    )  # trailing newline


def test_scores_that_break_the_contract_are_refused(lake_uri):
    import pyarrow as pa

    uri = scores_uri(lake_uri, "r1")
    lake.commit_parquet_table(uri, [pa.table({"diner_id": ["a", "a"], "score": [0.1, 0.2],
                                              "model_version": ["1", "1"]})])  # fmt: skip
    env = {"CRM_BASE_URL": "http://127.0.0.1:9", "CRM_API_TOKEN": "t"}
    with pytest.raises(StepError, match="1 duplicate diner_id"):
        publish.run(context(lake_uri, env))
    lake.commit_parquet_table(uri, [pa.table({"diner_id": ["a"], "score": [0.1]})])
    with pytest.raises(StepError, match=r"lacks column.*model_version"):
        publish.run(context(lake_uri, env))


def test_publish_reads_where_the_score_step_writes(lake_uri):
    ctx = context(lake_uri, {"SCORES_URI": "s3://scores-bucket/scores/"})
    assert scoring.scores_table_uri(ctx) == (
        f"s3://scores-bucket/scores/{PIPELINE}/customer={TENANT}/run={run_key('r1')}"
    )
    assert (
        scores_uri(lake_uri, "r1")
        == f"{lake_uri}/scores/{PIPELINE}/customer={TENANT}/run={run_key('r1')}"
    )
    from mlmodels.customer_propensity import MODEL

    assert scoring.score_columns(MODEL) == ("diner_id", "score", "model_version")


def test_batches_and_keys_are_deterministic_and_content_bound():
    records = [{"diner_id": f"d{i}", "score": i / 10} for i in range(10)]
    a = publish.plan_batches(records, 4, "p/c/run")
    assert [b.records for b in a] == [4, 4, 2]
    assert [b.key for b in a] == [b.key for b in publish.plan_batches(records, 4, "p/c/run")]
    assert len({b.key for b in a}) == 3
    other_run = publish.plan_batches(records, 4, "p/c/run2")
    assert not {b.key for b in a} & {b.key for b in other_run}
    changed = [dict(records[0], score=0.99), *records[1:]]
    assert publish.plan_batches(changed, 4, "p/c/run")[0].key != a[0].key
    assert publish.plan_batches(changed, 4, "p/c/run")[1].key == a[1].key


def test_retry_after_parsing_and_url_redaction():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: go now
    assert 9 < parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) <= 10
    assert redact_url("https://user:pw@crm.example.com:8443/api?key=x") == (
        "https://crm.example.com:8443/api"
    )
    assert mask("Bearer abc123 and abc123", "abc123") == "Bearer *** and ***"
    for bad in ("ftp://crm.example.com", "crm.example.com", "http://crm:port/"):
        with pytest.raises(CrmError, match="must be http"):
            CrmClient(bad, "t")


def test_client_masks_a_token_that_the_crm_echoes_back():
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"error": f"bad header {self.headers['Authorization']}"}).encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret = "tok-echoed-9a8b7c"
        client = CrmClient(f"http://127.0.0.1:{server.server_address[1]}", secret, max_retries=0)
        with pytest.raises(CrmError) as err:
            client.upsert_batch(b'{"records": []}', "k1", 0)
        assert secret not in str(err.value) and "Bearer ***" in str(err.value)
        assert "HTTP 400" in str(err.value)
    finally:
        server.shutdown()
        server.server_close()


def test_receiver_refuses_a_reused_key_with_another_body(tmp_path):
    import urllib.error
    import urllib.request

    from embedded.crm_receiver import serve

    server, _ = serve(str(tmp_path / "r.sqlite"), 0, "tk")
    try:

        def post(body: bytes) -> tuple[int, dict]:
            req = urllib.request.Request(server.url + "/v1/contacts:batchUpsert", data=body,
                                         method="POST")  # fmt: skip
            req.add_header("Authorization", "Bearer tk")
            req.add_header("Idempotency-Key", "same-key")
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        first = b'{"records": [{"contact_id": "a", "model": "m", "score": 1}]}'
        assert post(first) == (200, {"upserted": 1, "replayed": False})
        assert post(first) == (200, {"upserted": 1, "replayed": True})
        status, body = post(b'{"records": [{"contact_id": "b", "model": "m", "score": 1}]}')
        assert status == 422 and body["error"] == "idempotency_key_reused"
        assert server.store.stats()["contacts"] == 1
        req = urllib.request.Request(server.url + "/v1/contacts:batchUpsert", method="POST",
                                     data=b'{"records": [{"contact_id": "a", "model": "m", '
                                          b'"segment": "vip"}]}',
                                     headers={"Authorization": "Bearer tk",
                                              "Idempotency-Key": "k2"})  # fmt: skip
        urllib.request.urlopen(req, timeout=5).read()
        (record,) = server.store.page(10, "")["records"]
        assert record["segment"] == "vip" and record["_writes"] == 2  # upserted by (model, id)
    finally:
        server.shutdown()
        server.server_close()


def test_publish_reads_what_the_score_step_writes(tmp_path, lake_uri):
    """The score step's own writer (score_table, with a stand-in model) -> the publish step."""
    import pandas as pd
    import pyarrow as pa

    from embedded.crm_receiver import serve
    from mlmodels.customer_propensity import MODEL
    from model_steps.steps.score import score_table

    KEY, NUMERIC, CATEGORICAL = MODEL.key, MODEL.numeric_features, MODEL.categorical_features
    n = 250
    columns = {
        KEY: [f"x{i:04d}" for i in range(n)],
        **{c: [float(j % 7) for j in range(n)] for c in NUMERIC},
    }
    columns.update({c: [values[i % len(values)] for i in range(n)]
                    for c, values in CATEGORICAL.items()})  # fmt: skip
    columns["tenure_days"] = [float(i) for i in range(n)]  # the stand-in model scores from it
    features_uri = f"{lake_uri}/features/{PIPELINE}/customer={TENANT}/run={run_key('r1')}"
    lake.commit_parquet_table(features_uri, [pa.table(columns)])

    class Served(FramePredictor):  # the served model's interface: inputs -> the task's column
        def inputs(self, frame):
            return frame["tenure_days"].astype(int).to_numpy()

        def outputs(self, inputs, index):
            return pd.DataFrame({"score": ((inputs * 37) % 101) / 101}, index=index)

    ctx = context(lake_uri, {}, run_id="r1", top_fraction=0.1, batch_size=7)
    score_table(Served(None, {}), MODEL, features_uri, scoring.scores_table_uri(ctx), chunk_rows=60,
                model_version="4")  # fmt: skip
    server, _ = serve(str(tmp_path / "crm.sqlite"), 0, "tk")
    try:
        env = {"LAKE_URI": lake_uri, "CRM_BASE_URL": server.url, "CRM_API_TOKEN": "tk"}
        result = publish.run(
            context(lake_uri, env, run_id="r1", top_fraction=0.1, batch_size=7)
        ).to_xcom()
        page = server.store.page(1000, "")
    finally:
        server.shutdown()
        server.server_close()
    assert result["scored_rows"] == n and result["selected"] == 25
    assert result["batches"] == -(-result["records"] // 7)
    scores = {f"x{i:04d}": ((i * 37) % 101) / 101 for i in range(n)}
    top = sorted(scores, key=lambda d: (-scores[d], d))[:25]
    control = set(top) - {r["contact_id"] for r in page["records"]}
    assert len(control) == result["arms"]["control"] and len(page["records"]) == result["records"]
    assert {r["contact_id"] for r in page["records"]} <= set(top)
    assert {r["model_version"] for r in page["records"]} == {"4"}


def test_held_out_diners_never_reach_the_crm_and_a_retry_holds_out_the_same(
    crm, lake_uri, tmp_path
):
    run_id = "manual__control-arm"
    write_scores(lake_uri, run_id, n=2000)
    env = publish_env(lake_uri, crm.url, tmp_path / "xcom.json",
                      {"batch_size": 100, "top_fraction": 0.5, "control_fraction": 0.2})  # fmt: skip
    code, out, result = run_publish(env, run_id)
    assert code == 0, out
    arms, manifest = lake.read_parquet_table(result["campaign_uri"])
    assert manifest["arms"] == result["arms"] and manifest["control_fraction"] == 0.2
    rows = arms.to_pylist()
    control = {r["diner_id"] for r in rows if r["arm"] == "control"}
    treated = {r["diner_id"] for r in rows if r["arm"] == "treated"}
    assert len(control) + len(treated) == 1000 and 150 < len(control) < 250  # ~20% of the 1000
    received = {r["contact_id"] for r in crm.contacts()}
    assert received == treated and not received & control  # the receiver's own records
    first = manifest["attempt"]
    code, out, _ = run_publish(env, run_id)  # a retry: the same draw, committed again
    assert code == 0, out
    again, manifest = lake.read_parquet_table(result["campaign_uri"])
    assert manifest["attempt"] != first and again.to_pylist() == rows
    assert {r["contact_id"] for r in crm.contacts()} == treated


def test_records_the_crm_refuses_are_the_failed_records_of_the_result(crm, lake_uri, tmp_path):
    """A refused batch (a final non-2xx: here bad credentials) fails the step; its error carries
    the partial PublishResult whose failed_records the CLI pushes as mlops_records_failed."""
    run_id = "manual__refused"
    write_scores(lake_uri, run_id, n=300)
    env = {"CRM_BASE_URL": crm.url, "CRM_API_TOKEN": "not-the-token"}
    ctx = context(lake_uri, env, run_id=run_id, batch_size=20, max_concurrency=1, top_fraction=1.0)
    with pytest.raises(StepError, match="refused the credentials") as err:
        publish.run(ctx)
    result = err.value.result
    assert isinstance(result, PublishResult)
    assert (result.failed_batches, result.failed_records) == (1, 20)
    assert result.sent_records == 0 and "refused the credentials" in result.error
    assert "not-the-token" not in result.error
    failed = {m: v for m, _, v in metrics.samples(result) if m == "mlops_records_failed"}
    assert failed == {"mlops_records_failed": 20.0}


def _campaign_env(lake_uri: str, crm: Receiver, tmp_path: Path, name: str, priority: int,
                  fraction: float) -> dict[str, str]:  # fmt: skip
    variants = [{"id": "only", "crm": {"offer_code": name}}]
    cfg = {"batch_size": 50, "top_fraction": fraction,
           "campaign": {"id": name, "priority": priority, "variants": variants}}  # fmt: skip
    return publish_env(lake_uri, crm.url, tmp_path / f"{name}.json", cfg)


def test_two_campaigns_of_one_day_never_reach_one_diner_twice(crm, lake_uri, tmp_path):
    """Two campaigns of one model on one data date with overlapping selections, through the step:
    the first decided keeps its diners (its messages are out), the second is capped on them and
    records them as lost, holds its control arm out of its own diners, and a retry of it reproduces
    the decision and sends nothing again."""
    spring, winback = "manual__spring", "manual__winback"
    for run_id in (spring, winback):
        write_scores(lake_uri, run_id, n=400)
    code, out, a = run_publish(_campaign_env(lake_uri, crm, tmp_path, "spring", 0, 0.5), spring)
    assert code == 0, out
    env = _campaign_env(lake_uri, crm, tmp_path, "winback", 9, 1.0)  # higher priority, later
    code, out, b = run_publish(env, winback)
    assert code == 0, out
    top = set(expected_top(400, 0.5))
    assert (a["selected"], a["owned"], a["lost"]) == (200, 200, 0)
    assert (b["selected"], b["owned"], b["lost"]) == (400, 200, 200)
    assert b["lost_to"] == {f"{PIPELINE}/spring#1": 200}
    stats = crm.stats()
    assert stats["max_writes_per_contact"] == 1 and stats["duplicate_writes"] == 0
    by_run = Counter(r["run_key"] for r in crm.contacts())
    assert by_run == {run_key(spring): a["records"], run_key(winback): b["records"]}
    arms, manifest = lake.read_parquet_table(b["campaign_uri"])
    assert not set(arms["diner_id"].to_pylist()) & top  # both arms from the diners it owns
    assert manifest["arbitration"]["lost"] == 200 and manifest["arbitration"]["slot"] == 2
    decided = contact_claims.decision(contact_claims.claims(b["claims_uri"])[1])
    losers = decided.filter(pc.invert(decided["won"]))
    assert set(losers["contact"].to_pylist()) == top  # recorded, never sent
    assert set(losers["beaten_by"].to_pylist()) == {f"{PIPELINE}/spring#1"}

    requests = crm.stats()["counters"]["requests"]
    code, out, again = run_publish(env, winback)  # Airflow retries it: the same decision
    assert code == 0, out
    assert (again["owned"], again["lost"], again["sent_batches"]) == (200, 200, 0)
    assert again["skipped_records"] == b["records"]
    assert crm.stats()["counters"]["requests"] == requests
    assert len(contact_claims.claims(b["claims_uri"])) == 2  # no new claim
