"""The campaign simulator: a chain whose segments answer each offer variant at a known true rate.

Each segment has a base response rate and each variant a lift on it; one variant per segment is
clearly the best (1.5 to 2 times the base), and which one differs between segments, as in the case
the platform was designed from (200 variants, eight segments, a bandit learning which works where).
Because the true rates are known, the simulator can say what any allocation is worth, what the
oracle (always the best variant) would have earned, and whether an off-policy estimate is right.

:func:`play` runs successive campaigns with the platform's own allocation (:mod:`model_steps.bandit`):
each campaign's shares come from the posterior the previous campaigns' outcomes built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from model_steps import bandit


def _lifts(rng: np.random.Generator, segments: int, variants: int) -> np.ndarray:
    """Each variant's lift per segment: 0.6-1.1, and one best variant per segment 1.5-2x."""
    lift = rng.uniform(0.6, 1.1, (segments, variants))
    best = rng.integers(0, variants, segments)
    lift[np.arange(segments), best] = rng.uniform(1.5, 2.0, segments)
    return lift


@dataclass(frozen=True)
class CampaignWorld:
    segments: tuple[str, ...]
    variants: tuple[str, ...]
    rates: np.ndarray  # true conversion rate, segments x variants
    sizes: np.ndarray  # share of contacts per segment
    # true click rate, segments x variants: every converter clicked, and the others click through
    # at a rate with lifts of its own (a variant can draw clicks and not conversions)
    click_rates: np.ndarray

    @classmethod
    def example(cls, segments: int = 8, variants: int = 6, seed: int = 7) -> CampaignWorld:
        rng = np.random.default_rng(seed)
        base = rng.uniform(0.03, 0.10, segments)
        rates = base[:, None] * _lifts(rng, segments, variants)
        sizes = rng.dirichlet(np.full(segments, 5.0))
        click_through = rng.uniform(0.05, 0.15, segments)[:, None] * _lifts(rng, segments, variants)
        return cls(
            segments=tuple(f"segment-{s}" for s in range(segments)),
            variants=tuple(f"offer-{v}" for v in range(variants)),
            rates=rates,
            sizes=sizes,
            click_rates=rates + (1 - rates) * click_through,
        )

    def true_rates(self, reward: str = "conversion") -> np.ndarray:
        """The true rate of the reward (``conversion`` or ``click``), segments x variants."""
        return self.click_rates if reward == "click" else self.rates

    def contacts(
        self, n: int, campaign: int, rng: np.random.Generator
    ) -> tuple[list[str], np.ndarray]:
        """``n`` contact keys of one campaign and each one's segment index."""
        segment = rng.choice(len(self.segments), size=n, p=self.sizes)
        keys = [f"c{campaign}-{i}" for i in range(n)]
        return keys, segment

    def respond(
        self, segment: np.ndarray, variant: np.ndarray, rng: np.random.Generator,
        reward: str = "conversion",
    ) -> np.ndarray:  # fmt: skip
        rates = self.true_rates(reward)
        return (rng.random(segment.size) < rates[segment, variant]).astype(float)

    def rate_table(self, reward: str = "conversion") -> dict[str, np.ndarray]:
        rates = self.true_rates(reward)
        return {s: rates[i] for i, s in enumerate(self.segments)}

    def weights(self) -> dict[str, float]:
        return {s: float(w) for s, w in zip(self.segments, self.sizes, strict=True)}


def variant_lifts(
    segments: tuple[str, ...], variants: tuple[str, ...], seed: int = 7,
    reward: str = "conversion",
) -> dict[tuple[str, str], float]:  # fmt: skip
    """(segment, variant) -> how much the variant multiplies the segment's average response: the
    example world's true rates over each segment's mean (one variant per segment 1.5-2x the base).
    The example data generator applies it to the odds of converting on the offer, so the diners
    answer each declared variant differently and the bandit has something real to learn; with
    ``reward="click"``, the lifts of the click-through of those who do not convert (the odds of
    clicking after opening), which the generator applies to the clicks."""
    world = CampaignWorld.example(segments=len(segments), variants=len(variants), seed=seed)
    rates = world.rates
    if reward == "click":  # the click-through part of the click rate, without the converters
        rates = (world.click_rates - world.rates) / (1 - world.rates)
    lift = rates / rates.mean(axis=1, keepdims=True)
    return {(s, v): float(lift[i, j]) for i, s in enumerate(segments)
            for j, v in enumerate(variants)}  # fmt: skip


@dataclass
class Played:
    """One campaign of a simulation: the allocation used, what it earned, and its log."""

    shares: dict[str, np.ndarray]
    expected_reward: float  # sum of the true rates of the variants sent
    oracle_reward: float  # sum of the best rates for the same contacts
    log: dict[str, np.ndarray] = field(repr=False)

    @property
    def regret(self) -> float:
        return self.oracle_reward - self.expected_reward


def play(
    world: CampaignWorld,
    policy: bandit.Policy,
    campaigns: int,
    contacts: int,
    seed: int = 0,
    reward: str = "conversion",
) -> list[Played]:
    """Successive campaigns, each allocated from the posterior the earlier outcomes built, the
    contacts answering at the true rate of ``reward`` (``conversion`` or ``click``)."""
    rng, rates = np.random.default_rng(seed), world.true_rates(reward)
    state = bandit.PolicyState(campaign="simulated")
    played = []
    for c in range(campaigns):
        identity = f"sim-{seed}-{c}"
        table = {
            s: bandit.shares(state, s, world.variants, policy, identity) for s in world.segments
        }
        keys, segment = world.contacts(contacts, c, rng)
        names = np.asarray(world.segments)[segment]
        drawn = bandit.assign(keys, names, table, world.variants, identity)
        rewards = world.respond(segment, drawn.index, rng, reward)
        played.append(
            Played(
                shares=table,
                expected_reward=float(rates[segment, drawn.index].sum()),
                oracle_reward=float(rates[segment].max(axis=1).sum()),
                log={
                    "segments": names,
                    "actions": drawn.index,
                    "rewards": rewards,
                    "propensities": drawn.propensity,
                },
            )
        )
        state = bandit.update(state, names, drawn.names(), rewards, version=identity)
    return played
