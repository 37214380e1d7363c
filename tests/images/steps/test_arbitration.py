"""Arbitration between campaigns that select the same contacts on the same day."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from model_steps import arbitration
from model_steps.campaign import held_out


def _overlapping(seed: int = 0, contacts: int = 5000) -> arbitration.Candidates:
    rng = np.random.default_rng(seed)
    pool = [f"d{i}" for i in range(contacts)]
    selections = {c: rng.choice(pool, size=contacts // 2, replace=False).tolist() for c in "abc"}
    values = {c: rng.random(contacts // 2).tolist() for c in "abc"}
    return arbitration.candidates_from(selections, {"a": 1, "b": 2, "c": 2}, values)


@pytest.mark.parametrize("rule", ["priority", "expected_value"])
def test_no_contact_gets_two_campaigns_on_one_day(rule):
    candidates = _overlapping()
    decision = arbitration.arbitrate(candidates, rule=rule, cap=1)
    sent = Counter(candidates.contacts[decision.sent].tolist())
    assert max(sent.values()) == 1
    assert set(sent) == set(candidates.contacts.tolist())  # everybody selected gets exactly one


def test_priority_wins_then_value_then_campaign_id():
    candidates = arbitration.candidates_from(
        {"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["y", "z"]},
        {"a": 5, "b": 1, "c": 1},
        {"a": [0.1, 0.1, 0.1], "b": [0.9, 0.3], "c": [0.3, 0.2]},
    )
    decision = arbitration.arbitrate(candidates, rule="priority")
    assert arbitration.owned(decision, candidates, "a") == ["x", "y", "z"]
    by_value = arbitration.arbitrate(candidates, rule="expected_value")
    # y: b and c tie on value 0.3; equal priority too, so the campaign id decides (b)
    assert arbitration.owned(by_value, candidates, "b") == ["x", "y"]
    assert arbitration.owned(by_value, candidates, "c") == ["z"]
    assert arbitration.owned(by_value, candidates, "a") == []
    assert by_value.sent.sum() == 3
    # losers say who beat them
    rows = dict(zip(zip(candidates.campaigns, candidates.contacts, strict=True),
                    by_value.beaten_by, strict=True))  # fmt: skip
    assert rows[("a", "x")] == "b" and rows[("c", "y")] == "b" and rows[("b", "x")] is None


def test_the_cap_counts_what_was_already_sent_today():
    candidates = arbitration.candidates_from({"a": ["x", "y"], "b": ["x", "y"]}, {"a": 2, "b": 1})
    decision = arbitration.arbitrate(candidates, cap=2, already_sent={"x": 1, "y": 2})
    assert sorted(zip(candidates.campaigns[decision.sent], candidates.contacts[decision.sent],
                      strict=True)) == [("a", "x")]  # fmt: skip
    lost = [b for b, s in zip(decision.beaten_by, decision.sent, strict=True) if not s]
    assert lost == [None, "a", None]  # rows a:y, b:x, b:y: y's cap was spent, b lost x to a
    with pytest.raises(ValueError, match="cap"):
        arbitration.arbitrate(candidates, cap=0)


def test_a_campaign_selecting_a_contact_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        arbitration.candidates_from({"a": ["x", "x"]}, {"a": 1})


def test_control_groups_stay_valid_after_arbitration():
    """Each campaign splits only the contacts it owns: its control contacts get nothing at all that
    day (no other campaign's message), and its arms are drawn from the same population."""
    candidates = _overlapping(seed=4)
    decision = arbitration.arbitrate(candidates, rule="expected_value")
    sent_by: dict[str, set[str]] = {}
    control_by: dict[str, set[str]] = {}
    for campaign in "abc":
        mine = arbitration.owned(decision, candidates, campaign)
        control = held_out(mine, f"run-{campaign}", 0.2)
        sent_by[campaign] = {k for k, c in zip(mine, control, strict=True) if not c}
        control_by[campaign] = {k for k, c in zip(mine, control, strict=True) if c}
        assert 0.15 < len(control_by[campaign]) / len(mine) < 0.25
    for campaign in "abc":
        others = set().union(*(sent_by[o] for o in "abc" if o != campaign))
        assert not control_by[campaign] & others
