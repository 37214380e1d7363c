"""Which offer variant each treated contact gets: allocation shares per segment, and the draw.

The held-out control arm (:mod:`model_steps.campaign`) measures the campaign's total effect; inside
the treated arm a policy spreads contacts over the campaign's live variants, per segment:

* ``thompson`` (default): Beta-Bernoulli posteriors per (segment, variant), the share of each variant
  is the probability that it is the best one, estimated by Monte Carlo over the posteriors. This is
  "probability matching": a variant gets traffic in proportion to how likely it is to win, so clear
  losers fade quickly and close calls keep being tested.
* ``epsilon_greedy``: ``epsilon`` spread evenly, the rest to the variant with the highest posterior
  mean (ties split).
* ``uniform``: every live variant the same share (the baseline the bandit is measured against).

Then, for every policy, a uniform ``exploration`` slice is mixed in and every live variant is lifted
to at least ``floor``, so no variant's posterior is starved of data and every propensity is positive
(which off-policy evaluation, :mod:`model_steps.ope`, needs).

The draw is deterministic per run and contact, like the control arm: ``u = hash(run identity,
"variant", contact)`` picks the variant from the segment's cumulative shares, so a retry assigns
exactly the same variants and the propensity recorded with each contact is its true probability.

The formulas are small and written here, tested against closed forms and scipy: MABWiser would add
a dependency for two functions, and obp (the OPE reference library) is stale and pins old numpy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlplatform_contract.campaigns import AllocationPolicy
from model_steps.campaign import hashed_uniforms

PRIOR = (1.0, 1.0)  # Beta(1, 1): uniform over the response rate


class ArmCounts(BaseModel):
    """What one variant earned in one segment: successes out of contacts sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    successes: int = Field(0, ge=0)
    trials: int = Field(0, ge=0)

    def plus(self, successes: int, trials: int) -> ArmCounts:
        return ArmCounts(successes=self.successes + successes, trials=self.trials + trials)


class PolicyState(BaseModel):
    """The posterior state of one campaign, versioned by the run whose outcomes built it.

    Counts are kept for every variant ever sent, retired ones too, so retiring a variant and adding
    another loses nobody's evidence. Stored as JSON (data, never code) and validated when read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    campaign: str
    version: str = Field("prior", description="run key of the outcomes last folded in")
    based_on: str | None = Field(None, description="the version this one was folded onto")
    counts: dict[str, dict[str, ArmCounts]] = Field(default_factory=dict)

    def arm(self, segment: str, variant: str) -> ArmCounts:
        return self.counts.get(segment, {}).get(variant, ArmCounts())

    def posterior(self, segment: str, variants: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters (alpha, beta) of each variant's response rate in ``segment``."""
        arms = [self.arm(segment, v) for v in variants]
        alpha = np.array([PRIOR[0] + a.successes for a in arms])
        beta = np.array([PRIOR[1] + a.trials - a.successes for a in arms])
        return alpha, beta


# How shares are computed: the campaign declaration's policy section, one definition for both.
Policy = AllocationPolicy


def _seed(*parts: str) -> int:
    digest = hashlib.blake2b("\n".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def probability_best(
    alpha: np.ndarray, beta: np.ndarray, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """P(variant k has the highest response rate), by Monte Carlo over the Beta posteriors."""
    samples = rng.beta(alpha[None, :], beta[None, :], size=(draws, alpha.size))
    best = np.argmax(samples, axis=1)
    return np.bincount(best, minlength=alpha.size) / draws


def greedy(alpha: np.ndarray, beta: np.ndarray, epsilon: float) -> np.ndarray:
    """epsilon spread evenly, the rest split among the variants with the highest posterior mean."""
    mean = alpha / (alpha + beta)
    top = np.isclose(mean, mean.max())
    return epsilon / mean.size + (1 - epsilon) * top / top.sum()


def with_floor(shares: np.ndarray, floor: float) -> np.ndarray:
    """Lift every share to at least ``floor``, taking the mass from the others in proportion.

    Water-filling: a share lifted to the floor stays there, the rest are rescaled; at most one pass
    per variant."""
    if floor * shares.size > 1 + 1e-12:
        raise ValueError(f"floor {floor} for {shares.size} variants exceeds 1 in total")
    out = shares.astype(float).copy()
    fixed = np.zeros(out.size, dtype=bool)
    while True:
        low = (out < floor - 1e-15) & ~fixed
        if not low.any():
            return out
        fixed |= low
        out[fixed] = floor
        free = ~fixed
        remaining = 1.0 - floor * fixed.sum()
        mass = shares[free].sum()
        out[free] = shares[free] / mass * remaining if mass > 0 else remaining / free.sum()


def shares(
    state: PolicyState, segment: str, variants: Sequence[str], policy: Policy, identity: str
) -> np.ndarray:
    """Allocation shares of the live ``variants`` in ``segment`` (sum 1, each ≥ ``floor``).

    ``identity`` seeds the Monte Carlo, so the same run computes the same shares on a retry."""
    alpha, beta = state.posterior(segment, variants)
    if policy.kind == "uniform":
        base = np.full(len(variants), 1 / len(variants))
    elif policy.kind == "epsilon_greedy":
        base = greedy(alpha, beta, policy.epsilon)
    elif policy.kind == "thompson":
        rng = np.random.default_rng(_seed(identity, state.version, segment))
        base = probability_best(alpha, beta, policy.draws, rng)
    else:
        raise ValueError(f"unknown policy {policy.kind!r}")
    mixed = (1 - policy.exploration) * base + policy.exploration / len(variants)
    return with_floor(mixed, policy.floor)


def uniform_draws(keys: Iterable[str], identity: str) -> np.ndarray:
    """One fixed number in [0, 1) per contact, independent of the control-arm draw (other salt)."""
    return hashed_uniforms(keys, identity.encode() + b"\nvariant\n")


@dataclass(frozen=True)
class Assignment:
    """Each contact's variant (index into ``variants``) and the probability it had of getting it."""

    variants: tuple[str, ...]
    index: np.ndarray
    propensity: np.ndarray

    def names(self) -> list[str]:
        return [self.variants[i] for i in self.index]


def assign(
    keys: Sequence[str],
    segments: Sequence[str],
    table: Mapping[str, np.ndarray],
    variants: Sequence[str],
    identity: str,
) -> Assignment:
    """Draw each contact's variant from its segment's shares (``table[segment]``)."""
    u = uniform_draws(keys, identity)
    names, inverse = np.unique(np.asarray(segments, dtype=object), return_inverse=True)
    index = np.empty(u.size, dtype=np.int64)
    propensity = np.empty(u.size)
    for s, segment in enumerate(names):
        rows = inverse == s
        segment_shares = table[segment]
        cumulative = np.cumsum(segment_shares)
        cumulative[-1] = 1.0  # rounding never leaves a gap at the top
        picked = np.searchsorted(cumulative, u[rows], side="right")
        index[rows] = picked
        propensity[rows] = segment_shares[picked]
    return Assignment(tuple(variants), index, propensity)


def update(
    state: PolicyState,
    segments: Sequence[str],
    variants: Sequence[str],
    rewards: Sequence[float],
    version: str,
) -> PolicyState:
    """Fold one run's outcomes (one row per treated contact) into the posterior counts."""
    counts = {s: dict(arms) for s, arms in state.counts.items()}
    keys = np.char.add(np.char.add(np.asarray(segments, dtype=str), "\x1f"), variants)
    reward = np.asarray(rewards, dtype=float)
    pairs, inverse = np.unique(keys, return_inverse=True)
    successes = np.bincount(inverse, weights=reward > 0, minlength=pairs.size)
    trials = np.bincount(inverse, minlength=pairs.size)
    for pair, won, sent in zip(pairs.tolist(), successes, trials, strict=True):
        segment, variant = pair.split("\x1f")
        arm = counts.setdefault(segment, {}).get(variant, ArmCounts())
        counts[segment][variant] = arm.plus(int(won), int(sent))
    return PolicyState(
        campaign=state.campaign, version=version, based_on=state.version, counts=counts
    )
