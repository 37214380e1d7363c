"""Campaign experiments: does the bandit learn, and is the allocation fast enough for 1M contacts?

    .venv-steps/bin/python benchmarks/bench_bandit.py [--campaigns 10] [--contacts 50000] [--quick]
        [--reward conversion|click]

Part 1 plays successive campaigns on the simulator (8 segments x 6 variants, true response rates
known, mlmodels.restaurant_chain.campaign_world) with Thompson sampling, epsilon-greedy and uniform
allocation, each campaign allocated from the posterior the earlier ones built. Cumulative regret is
measured against the oracle (always each segment's best variant) from the true rates of the variants
sent (of conversions, or with ``--reward click`` of clicks, whose best variants differ); the figure
to watch is Thompson's regret as a share of uniform's (goal <= 0.5). The last campaign's log feeds
the off-policy estimates of three policies, next to their true values.

Part 2 times the allocation of 1M treated contacts (shares per segment + the per-contact hashed
draw) against a plain numpy draw of the same shares (``Generator.choice``, not reproducible per
contact), and reports the ratio. Prints tables, writes benchmarks/results/bandit.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import results_file

from mlmodels.restaurant_chain.campaign_world import CampaignWorld, play
from model_steps import bandit, ope

REPO = Path(__file__).resolve().parents[1]
POLICIES = {
    "thompson": bandit.Policy(),
    "epsilon_greedy": bandit.Policy(kind="epsilon_greedy"),
    "uniform": bandit.Policy(kind="uniform"),
}


def best_share(world: CampaignWorld, shares: dict[str, np.ndarray], reward: str) -> float:
    """The mean share of each segment's truly best variant."""
    rates = world.true_rates(reward)
    best = [shares[s][rates[i].argmax()] for i, s in enumerate(world.segments)]
    return round(float(np.mean(best)), 3)


def learning(world: CampaignWorld, campaigns: int, contacts: int, reward: str) -> dict:
    runs = {
        name: play(world, policy, campaigns, contacts, seed=1, reward=reward)
        for name, policy in POLICIES.items()
    }
    oracle = sum(p.oracle_reward for p in runs["uniform"])
    out = {
        name: {
            "reward": round(sum(p.expected_reward for p in played), 1),
            "regret": round(sum(p.regret for p in played), 1),
            "regret_per_campaign": [round(p.regret, 1) for p in played],
            "best_variant_share_last": best_share(world, played[-1].shares, reward),
        }
        for name, played in runs.items()
    }
    out["oracle_reward"] = round(oracle, 1)
    out["thompson_regret_vs_uniform"] = round(
        out["thompson"]["regret"] / out["uniform"]["regret"], 3
    )
    out["ope"] = off_policy(world, runs["thompson"][-1].log, reward)
    return out


def off_policy(world: CampaignWorld, log: dict, reward: str) -> dict:
    k, rates = len(world.variants), world.true_rates(reward)
    policies = {
        "uniform": {s: np.full(k, 1 / k) for s in world.segments},
        "oracle": {s: np.eye(k)[rates[i].argmax()] for i, s in enumerate(world.segments)},
        "worst": {s: np.eye(k)[rates[i].argmin()] for i, s in enumerate(world.segments)},
    }
    result = ope.evaluate(ope.Log(**log), policies, k, bootstrap=200)
    truth = world.rate_table(reward)
    return {
        name: {"true": round(ope.true_value(policies[name], truth, world.weights()), 5),
               **{e: [round(x, 5) for x in (v.value, v.low, v.high)] for e, v in est.items()}}
        for name, est in result.items()
    }  # fmt: skip


def allocation_speed(world: CampaignWorld, contacts: int) -> dict:
    rng = np.random.default_rng(0)
    keys, segment = world.contacts(contacts, 0, rng)
    names = np.asarray(world.segments)[segment]
    state = bandit.PolicyState(campaign="bench")
    t0 = time.perf_counter()
    table = {
        s: bandit.shares(state, s, world.variants, bandit.Policy(), "r1") for s in world.segments
    }
    drawn = bandit.assign(keys, names, table, world.variants, "r1")
    platform_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = np.empty(contacts, dtype=np.int64)
    for s in world.segments:
        rows = names == s
        plain[rows] = rng.choice(len(world.variants), size=int(rows.sum()), p=table[s])
    numpy_s = time.perf_counter() - t0
    assert drawn.index.size == plain.size == contacts
    return {"contacts": contacts, "platform_seconds": round(platform_s, 3),
            "numpy_choice_seconds": round(numpy_s, 3),
            "ratio_vs_numpy": round(platform_s / numpy_s, 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=10)
    parser.add_argument(
        "--contacts", type=int, default=50_000, help="treated contacts per campaign"
    )
    parser.add_argument("--allocate", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="8 campaigns x 10k, 100k to allocate")
    parser.add_argument(
        "--reward",
        choices=("conversion", "click"),
        default="conversion",
        help="what the contacts answer at their true rate (default conversion)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "bandit.json")
    args = parser.parse_args()
    if args.quick:
        args.campaigns, args.contacts, args.allocate = 8, 10_000, 100_000
    world = CampaignWorld.example(segments=8, variants=6, seed=7)
    learned = learning(world, args.campaigns, args.contacts, args.reward)
    speed = allocation_speed(world, args.allocate)
    result = {"benchmark": "bandit", "reward": args.reward, "segments": 8, "variants": 6,
              "campaigns": args.campaigns,
              "contacts_per_campaign": args.contacts, **learned, "allocation": speed,
              "python": platform.python_version(), "cpus": os.cpu_count()}  # fmt: skip
    print(
        f"{args.campaigns} campaigns x {args.contacts:,} treated contacts, 8 segments x 6 variants"
        f", reward {args.reward}"
    )
    print(f"{'policy':<16}{'reward':>10}{'regret':>10}{'vs uniform':>12}{'best share (last)':>19}")
    for name in POLICIES:
        r = learned[name]
        ratio = r["regret"] / learned["uniform"]["regret"]
        print(f"{name:<16}{r['reward']:>10.1f}{r['regret']:>10.1f}{ratio:>12.2f}"
              f"{r['best_variant_share_last']:>19.2f}")  # fmt: skip
    print(f"{'oracle':<16}{learned['oracle_reward']:>10.1f}{0:>10.1f}")
    print("\noff-policy estimates from Thompson's last campaign (value [95% interval])")
    print(f"{'target policy':<14}{'true':>9}" + "".join(f"{e:>28}" for e in ope.ESTIMATORS))
    for name, row in learned["ope"].items():
        cells = "".join(f"{f'{v[0]:.4f} [{v[1]:.4f}, {v[2]:.4f}]':>28}" for e, v in row.items()
                        if e != "true")  # fmt: skip
        print(f"{name:<14}{row['true']:>9.4f}{cells}")
    print(f"\nallocation of {speed['contacts']:,} contacts: {speed['platform_seconds']:.2f} s "
          f"(numpy choice {speed['numpy_choice_seconds']:.2f} s, {speed['ratio_vs_numpy']}x: the "
          "platform hashes each contact so a retry draws the same)")  # fmt: skip
    results_file.write(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
