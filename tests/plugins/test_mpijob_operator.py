"""The MPIJob operator against a Kubernetes API on loopback (tests/plugins/fake_kube_api.py).

The real kubernetes client, built by Airflow's KubernetesHook from a kube_config connection, talks HTTP
to the fake server, which injects 500s, 429 with Retry-After, a lost create reply, a dropped log stream
and jobs left by earlier tries. What is asserted is what a user sees: the task's result, the jobs left
in the namespace, how many were created, and the log lines in the task log.
"""

from __future__ import annotations

import asyncio
import json
import re
import types
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from fake_kube_api import FakeKube, kube_config, serve

from mlplatform.runtime.mpijob import TRY_LABEL, MPIJobOperator, run_labels

NS = "ml-steps"
RUN_ID = "scheduled__2026-03-01T05:00:00+00:00"
LOG = ["epoch 1 auc 0.70", "epoch 2 auc 0.74", "[1]<stdout>: rank 1 done", "epoch 3 auc 0.76",
       'STEP_RESULT_JSON={"model_version": "7", "holdout_auc": 0.76}', "bye"]  # fmt: skip
RESULT = {"model_version": "7", "holdout_auc": 0.76}
MANIFEST = {
    "apiVersion": "kubeflow.org/v2beta1",
    "kind": "MPIJob",
    "metadata": {
        "namespace": NS,
        "labels": {"mlops.io/customer": "giant-co", "mlops.io/step": "train"},
    },
    "spec": {"mpiReplicaSpecs": {}},
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKube]:
    state = FakeKube(launcher_log=list(LOG))
    server = serve(state)
    conn = {"conn_type": "kubernetes", "extra": {"kube_config": json.dumps(kube_config(state.url))}}
    monkeypatch.setenv("AIRFLOW_CONN_KUBE_FAKE", json.dumps(conn))
    yield state
    server.shutdown()


def context(try_number: int = 1) -> dict[str, Any]:
    ti = types.SimpleNamespace(dag_id="big_model__giant-co", task_id="train", run_id=RUN_ID,
                               try_number=try_number, map_index=-1)  # fmt: skip
    return {"ti": ti}


def operator(**kwargs: Any) -> MPIJobOperator:
    return MPIJobOperator(
        task_id="train", mpijob=MANIFEST, namespace=NS, kubernetes_conn_id="kube_fake",
        startup_timeout_seconds=30, timeout_seconds=60, poll_interval=0.05, **kwargs,
    )  # fmt: skip


def defer(op: MPIJobOperator, ctx: dict[str, Any]) -> Any:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    return deferred.value.trigger


def fire(trigger: Any) -> dict[str, Any]:
    """Run the trigger as the triggerer would, after a round trip through its serialized form."""
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)

    async def first() -> dict[str, Any]:
        async for event in cls(**kwargs).run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(first())


def earlier_try(fake: FakeKube, try_number: int, state: str) -> str:
    """A job a previous try (or a worker that died) left behind."""
    op, ctx = operator(), context(try_number)
    body = op.job_body(ctx)
    body["metadata"]["namespace"] = NS
    fake.add_job(body, state)
    return str(body["metadata"]["name"])


def test_deferred_run_survives_a_lost_create_reply_and_api_errors(fake) -> None:
    # the API server stores the job but the reply is a 500: the retry sees 409 and adopts it
    fake.fail_next("POST", "/mpijobs$", 500, after_applying=True)
    op, ctx = operator(), context()
    trigger = defer(op, ctx)
    (name,) = fake.jobs
    assert fake.creates() == 2 and len(fake.jobs) == 1
    assert fake.jobs[name]["metadata"]["labels"][TRY_LABEL] == "1"
    assert (
        fake.jobs[name]["metadata"]["labels"]["mlops.io/run-id"]
        == run_labels(ctx["ti"])["mlops.io/run-id"]
    )
    assert fake.jobs[name]["metadata"]["annotations"]["mlops.io/airflow-run-id"] == RUN_ID
    fake.set_state(name, "Succeeded")
    fake.fail_next("GET", f"/mpijobs/{name}$", 503)
    fake.fail_next(
        "GET", f"/mpijobs/{name}$", 429, headers={"Retry-After": "1"}, after_applying=True
    )
    event = fire(trigger)
    assert event == {"name": name, "state": "Succeeded"}
    fake.fail_next("GET", "/pods/.*/log$", 500)
    assert op.execute_complete(ctx, event) == RESULT
    assert fake.jobs == {}, "a succeeded job is deleted with its pods"


def test_a_retry_adopts_the_running_job_instead_of_training_twice(fake) -> None:
    running = earlier_try(fake, 1, "Running")
    earlier_try(fake, 0, "Failed")
    op, ctx = operator(), context(try_number=2)
    trigger = defer(op, ctx)
    assert trigger.name == running and fake.creates() == 0
    fake.set_state(running, "Succeeded")
    assert op.execute_complete(ctx, fire(trigger)) == RESULT


def test_a_job_that_succeeded_before_its_worker_died_gives_its_result_without_retraining(
    fake,
) -> None:
    done = earlier_try(fake, 1, "Succeeded")
    op, ctx = operator(), context(try_number=2)
    trigger = defer(op, ctx)
    assert trigger.name == done and fake.creates() == 0
    assert op.execute_complete(ctx, fire(trigger)) == RESULT


def test_after_a_failed_try_a_new_job_starts_and_the_failed_one_is_kept(fake) -> None:
    failed = earlier_try(fake, 1, "Failed")
    op, ctx = operator(), context(try_number=2)
    trigger = defer(op, ctx)
    assert trigger.name != failed and fake.creates() == 1
    fake.set_state(trigger.name, "Failed")
    with pytest.raises(
        AirflowException, match=rf"ml-steps/{trigger.name} failed.*kubectl -n ml-steps describe"
    ):
        op.execute_complete(ctx, fire(trigger))
    assert set(fake.jobs) == {failed, trigger.name}, "failed jobs stay for debugging"


def test_a_job_that_never_gets_nodes_fails_at_the_startup_deadline(fake) -> None:
    op = operator()
    op.startup_timeout_seconds = 0
    trigger = defer(op, context())
    with pytest.raises(AirflowException, match="did not start within 0s"):
        op.execute_complete(context(), fire(trigger))


def test_a_result_missing_from_the_log_is_an_error_and_the_job_is_kept(fake) -> None:
    fake.launcher_log = ["epoch 1", "no result line"]
    op, ctx = operator(), context()
    trigger = defer(op, ctx)
    fake.set_state(trigger.name, "Succeeded")
    with pytest.raises(AirflowException, match="succeeded but its launcher logged no result"):
        op.execute_complete(ctx, fire(trigger))
    assert trigger.name in fake.jobs


def test_streamed_log_resumes_after_a_dropped_connection_without_losing_or_repeating_lines(
    fake, capsys, caplog
) -> None:
    fake.drop_log_after = 3  # mid-pair: lines 3 and 4 share a timestamp
    fake.finish_when_logged = "Succeeded"
    op, ctx = operator(deferrable=False), context()
    earlier_try(fake, 1, "Running")  # a restarted worker: adopt, then follow the log
    assert op.execute(ctx) == RESULT
    task_log = capsys.readouterr().out  # the task logger writes to stdout outside a task runner
    streamed = re.findall(r"\[launcher\] (.*?)\s+\[airflow\.task", task_log)
    assert streamed == LOG
    follows = [p for m, p in fake.requests if p.endswith("/log")]
    assert len(follows) == 3, "first follow, the resumed follow, the final full read"
    assert any("broke" in r.getMessage() and "resuming" in r.getMessage() for r in caplog.records)
    assert fake.creates() == 0 and fake.jobs == {}
