"""Several campaigns, one contact, one day: which campaign may send, under a frequency cap.

Two models of one customer (or two campaigns of one model) can select the same contact for the same
day. Arbitration runs on the campaigns' *selections*, before any of them splits its contacts into a
treated and a held-out control arm. Each contact is owned that day by the campaigns that win it, and
each campaign draws its control group only from the contacts it owns. That keeps every control group
valid: treated and control of a campaign come from the same population (the contacts it won), and a
control contact of campaign A is never sent campaign B's message instead, because it is not offered
to B at all once A owns it (A's hold-out simply sends nothing). What a campaign measures is then its
effect among the contacts it wins, which the docs say in those words.

Rules, declared in settings: ``priority`` (higher wins; ties by expected value, then campaign id) or
``expected_value`` (higher wins; ties by priority, then campaign id). The cap counts sends per
contact per customer per day, including those already committed today by earlier runs. Losers are
recorded with the campaign that beat them, never sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Rule = Literal["priority", "expected_value"]


@dataclass(frozen=True)
class Candidates:
    """One row per (campaign, contact) a campaign selected for the day."""

    campaigns: np.ndarray  # campaign id per row
    contacts: np.ndarray  # contact key per row
    priority: np.ndarray  # the campaign's declared priority per row
    value: np.ndarray  # expected value of sending this campaign to this contact

    def __post_init__(self) -> None:
        sizes = {a.size for a in (self.campaigns, self.contacts, self.priority, self.value)}
        if len(sizes) > 1:
            raise ValueError(f"candidate columns differ in length: {sorted(sizes)}")
        pairs = np.char.add(
            np.char.add(self.campaigns.astype(str), "\x1f"), self.contacts.astype(str)
        )
        if np.unique(pairs).size != pairs.size:
            raise ValueError("a campaign selected the same contact twice")


@dataclass(frozen=True)
class Decision:
    sent: np.ndarray  # bool per candidate row: this campaign owns the contact today
    beaten_by: list[str | None]  # for a loser, the campaign that took its place (None: cap used)


def arbitrate(
    candidates: Candidates,
    rule: Rule = "priority",
    cap: int = 1,
    already_sent: Mapping[str, int] | None = None,
) -> Decision:
    """Who sends to whom today: per contact, the best ``cap - already_sent`` candidates win."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    contacts = candidates.contacts.astype(str)
    first, second = (
        (candidates.priority, candidates.value)
        if rule == "priority"
        else (candidates.value, candidates.priority)
    )
    # lexsort: last key is primary. Per contact, best first; campaign id breaks the last ties.
    order = np.lexsort((candidates.campaigns.astype(str), -second, -first, contacts))
    sorted_contacts = contacts[order]
    starts = np.r_[0, np.flatnonzero(sorted_contacts[1:] != sorted_contacts[:-1]) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, order.size]))
    rank = np.arange(order.size) - group_start
    used = np.array([(already_sent or {}).get(c, 0) for c in sorted_contacts], dtype=np.int64)
    wins_sorted = rank < np.maximum(cap - used, 0)
    sent = np.empty(order.size, dtype=bool)
    sent[order] = wins_sorted
    return Decision(sent=sent, beaten_by=_beaten_by(candidates, order, group_start, wins_sorted))


def _beaten_by(
    candidates: Candidates, order: np.ndarray, group_start: np.ndarray, wins: np.ndarray
) -> list[str | None]:
    """For each losing row, the best campaign that won its contact (None if the cap was spent)."""
    out: list[str | None] = [None] * order.size
    campaigns = candidates.campaigns.astype(str)[order]
    for i in np.flatnonzero(~wins):
        winner = group_start[i]
        out[order[i]] = campaigns[winner] if wins[winner] else None
    return out


def owned(decision: Decision, candidates: Candidates, campaign: str) -> list[str]:
    """The contacts ``campaign`` owns today, in its selection order: what it splits into arms."""
    rows = (candidates.campaigns.astype(str) == campaign) & decision.sent
    return candidates.contacts.astype(str)[rows].tolist()


def candidates_from(selections: Mapping[str, Sequence[str]], priority: Mapping[str, int],
                    values: Mapping[str, Sequence[float]] | None = None) -> Candidates:  # fmt: skip
    """Candidates from each campaign's ordered selection (values default to 0)."""
    campaigns, contacts, prio, value = [], [], [], []
    for campaign, keys in selections.items():
        campaigns += [campaign] * len(keys)
        contacts += list(keys)
        prio += [priority[campaign]] * len(keys)
        value += list((values or {}).get(campaign, [0.0] * len(keys)))
    return Candidates(np.array(campaigns, dtype=object), np.array(contacts, dtype=object),
                      np.array(prio, dtype=float), np.array(value, dtype=float))  # fmt: skip
