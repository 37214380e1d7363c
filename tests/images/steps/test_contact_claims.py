"""The day's contact claims (model_steps.contact_claims): slots, decisions in slot order, retries,
the cap across runs, and runs racing for the same day, on a local lake."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from model_steps import contact_claims, lake


def _record(campaign: str, priority: int = 0, run: str = "r1", cap: int = 1,
            rule: str = "priority") -> dict:  # fmt: skip
    return {"pipeline": "p", "campaign": campaign, "run_key": run, "priority": priority,
            "rule": rule, "cap": cap}  # fmt: skip


def _claim(day: str, campaign: str, contacts: list[str], value: float = 0.5,
           **kw) -> contact_claims.Claim:  # fmt: skip
    values = np.full(len(contacts), value)
    return contact_claims.claim(day, _record(campaign, **kw), contacts, values)


def _sent(c: contact_claims.Claim) -> set[str]:
    table = contact_claims.decision(c)
    return set(table.filter(table["won"])["contact"].to_pylist())


@pytest.fixture
def day(tmp_path: Path) -> str:
    return f"file://{tmp_path}/lake/publish/_claims/customer=c/day=2026-06-29"


def test_a_decided_claim_keeps_its_contacts_and_a_later_one_is_capped(day):
    a = _claim(day, "a", [f"d{i}" for i in range(0, 60)], priority=0)
    assert _sent(a) == {f"d{i}" for i in range(60)}  # alone: everything
    b = _claim(day, "b", [f"d{i}" for i in range(40, 100)], priority=9)  # later, higher priority
    assert (a.slot, b.slot) == (1, 2)
    assert _sent(b) == {f"d{i}" for i in range(60, 100)}  # a's sends are never taken back
    decided = contact_claims.decision(b)
    losers = decided.filter(~np.array(decided["won"].to_pylist()))
    assert losers.num_rows == 20 and set(losers["beaten_by"].to_pylist()) == {"p/a#1"}


@pytest.mark.parametrize(("rule", "winner"), [("priority", "b"), ("expected_value", "a")])
def test_claims_pending_together_are_arbitrated_by_the_rule(day, rule, winner):
    # both claimed before either decided: the declared rule decides the overlap
    # a: low priority, high expected value; b: the other way round
    a = _claim(day, "a", [f"d{i}" for i in range(500, 600)], value=0.9, priority=0, rule=rule)
    b = _claim(day, "b", [f"d{i}" for i in range(0, 100)] + [f"d{i}" for i in range(500, 520)],
               value=0.1, priority=5, rule=rule)  # fmt: skip
    overlap = {f"d{i}" for i in range(500, 520)}
    sent_a, sent_b = _sent(a), _sent(b)
    assert not sent_a & sent_b
    assert (overlap <= sent_b) == (winner == "b") and (overlap <= sent_a) == (winner == "a")


def test_a_retry_finds_its_claim_and_its_decision_whatever_came_since(day):
    a = _claim(day, "a", ["d1", "d2", "d3"], priority=0)
    first = contact_claims.decision(a)
    _claim(day, "b", ["d1", "d2", "d3", "d4"], priority=9, run="other")
    again = _claim(day, "a", ["d1", "d2", "d3"], priority=0)  # the same run, retried
    assert again.slot == a.slot and len(contact_claims.claims(day)) == 2
    assert contact_claims.decision(again).equals(first)


def test_the_cap_counts_every_earlier_run_of_the_day(day):
    contacts = [f"d{i}" for i in range(30)]
    runs = [_claim(day, "a", contacts, run=f"r{i}", cap=2) for i in range(4)]
    sends = [len(_sent(r)) for r in runs]
    assert sends == [30, 30, 0, 0]  # two a day, however many runs ask


def test_runs_racing_for_one_day_never_exceed_the_cap(day):
    rng = np.random.default_rng(3)
    pool = [f"d{i}" for i in range(400)]
    picks = [sorted(rng.choice(pool, 150, replace=False).tolist()) for _ in range(6)]
    out: dict[int, set[str]] = {}
    errors: list[BaseException] = []

    def publish(i: int) -> None:
        try:
            c = _claim(day, f"c{i}", picks[i], priority=i % 3)
            out[i] = _sent(c)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    slots = sorted(c.slot for c in contact_claims.claims(day))
    assert slots == list(range(1, 7))  # one slot each, none shared
    per_contact = Counter(k for sent in out.values() for k in sent)
    assert max(per_contact.values()) == 1
    assert set(per_contact) == set().union(*map(set, picks))  # nobody selected is left out
    decided = [f for f in lake.list_files(day) if f.startswith("decision-")]
    assert len(decided) == 6


def test_create_once_lets_exactly_one_writer_win(tmp_path):
    uri = f"file://{tmp_path}/x/claim-000001.json"
    assert contact_claims.create_once(uri, b"first") is True
    assert contact_claims.create_once(uri, b"second") is False
    assert lake.read_bytes(uri) == b"first"


@pytest.mark.slow  # starts a local S3 endpoint (moto)
def test_create_once_on_s3_is_a_conditional_put(monkeypatch):
    """On S3 the slot is a PUT with If-None-Match: * (moto answers 412 like S3 once it exists)."""
    import socket

    import boto3
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        for name, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"),
                            ("AWS_DEFAULT_REGION", "eu-west-1")):  # fmt: skip
            monkeypatch.setenv(name, value)
        boto3.client("s3").create_bucket(
            Bucket="lake", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        uri = "s3://lake/lake/publish/_claims/customer=c/day=2026-06-29/claim-000001.json"
        assert contact_claims.create_once(uri, b"first") is True
        assert contact_claims.create_once(uri, b"second") is False
        assert lake.read_bytes(uri) == b"first"
    finally:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()  # the next test's endpoint is another
        server.stop()
