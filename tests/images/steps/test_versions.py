"""The versions CLI (model_steps.versions) without a server: who may run it, and what it prints.
Against a real registry, as the scorer's identity: test_evaluate_score's automatic rollback test."""

from __future__ import annotations

import datetime as dt

import pytest

from model_steps.champion import ChampionEvent
from model_steps.contract import UsageError
from model_steps.versions import VersionRow, check_identity, main, render


def test_only_a_read_identity_of_the_customer_may_list() -> None:
    uri = "http://mlflow:5000"
    check_identity("acme-foods", uri, {"MLFLOW_TRACKING_USERNAME": "scorer@acme-foods"})
    check_identity("acme-foods", uri, {"MLFLOW_TRACKING_USERNAME": "monitor@acme-foods"})
    for who in ("admin", "gate@acme-foods", "scorer@globex", None):
        env = {} if who is None else {"MLFLOW_TRACKING_USERNAME": who}
        with pytest.raises(UsageError, match="scorer@acme-foods or monitor@acme-foods"):
            check_identity("acme-foods", uri, env)
    check_identity("acme-foods", "sqlite:///tmp/mlflow.db", {})  # a local store: no identities


def test_the_listing_marks_the_champion_and_shows_the_history() -> None:
    def row(version: str, verdict: str, champion: bool = False) -> VersionRow:
        return VersionRow(version=version, verdict=verdict, digest="ab" * 32,
                          data_date="2026-06-30", run_key=f"run{version}",
                          registered_at="2026-06-30T05:00:00+00:00", champion=champion)  # fmt: skip

    at = dt.datetime(2026, 7, 1, 6, tzinfo=dt.UTC)
    events = [
        ChampionEvent(pipeline="p", customer="c", registered_model="p-c", from_version=None,
                      to_version="1", run_key="run1", reason="no champion yet", actor="gate",
                      at=at),
        ChampionEvent(pipeline="p", customer="c", registered_model="p-c", from_version="3",
                      to_version="1", run_key="auto", reason="automatic rollback: v3 harm",
                      actor="automatic", at=at + dt.timedelta(days=2)),
    ]  # fmt: skip
    text = render("p__c", "p-c", [row("3", "passed"), row("2", "refused"), row("1", "passed", True)],
                  events)  # fmt: skip
    lines = text.splitlines()
    assert "* v1       passed   2026-06-30  abababababab  run1" in lines
    assert "  v2       refused  2026-06-30  abababababab  run2" in lines
    assert any("v3 -> v1" in line and "automatic" in line for line in lines)
    assert lines[-1] == (
        '  airflow dags trigger p__c --conf \'{"model_version": "3", "make_champion": true, '
        '"reason": "why"}\''
    )


def test_without_the_environment_it_says_what_to_set(monkeypatch, capsys) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["--pipeline", "customer_propensity", "--customer", "acme-foods"]) == 2
    assert "set MLFLOW_TRACKING_URI and LAKE_URI" in capsys.readouterr().err
