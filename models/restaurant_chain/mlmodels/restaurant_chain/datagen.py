"""Synthetic example data: a restaurant chain's diners, orders and email campaign events.

Deterministic by seed. Writes the raw zone the way the chain's systems would drop it (see
:mod:`mlmodels.restaurant_chain.tables`): a CRM diner export (initial backfill + daily deltas, CSV), daily POS
order CSVs and the email provider's daily JSON-lines event export.

The signal is real and learnable: each diner has a hidden ordering rate, spend level, engagement
level and maybe a churn date. Orders and email opens/clicks are drawn from those, and the chance to
convert on a campaign email grows with recent activity (recency, frequency), spend (monetary) and
engagement. Features computed from the observed history therefore predict conversion well above chance.

The last campaign goes to every diner the day after ``cutoff``; the window after it carries the
label. ``_datagen.json`` next to the tables records the parameters and the data date to run with.

    python -m mlmodels.restaurant_chain.datagen --customer acme-foods --lake file:///tmp/lake --size small
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from mlmodels.restaurant_chain import tables as source
from model_steps import lake, raw_schema

# diners per size; orders ~ 5 per diner in the year before the cutoff
SIZES: dict[str, int] = {
    "tiny": 600,  # unit/bad-input tests
    "small": 4_000,  # make run, integration test
    "medium": 20_000,  # ~100k order rows
    "large": 200_000,  # ~1M order rows
    "xl": 1_000_000,  # ~5M order rows, >= 1M diners
}
DEFAULT_CUTOFF = dt.date(2026, 6, 15)  # the training table's cutoff the signal is built around
DEFAULT_HISTORY_DAYS = 420
LABEL_WINDOW_DAYS = 14
# the last drop day, a label window after the cutoff: the data date to run the pipeline with
DEFAULT_DATA_DATE = DEFAULT_CUTOFF + dt.timedelta(days=LABEL_WINDOW_DAYS)
CAMPAIGN_EVERY_DAYS = 28
CAMPAIGN_REACH = 0.25  # share of diners each regular campaign goes to


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate(
    n_diners: int,
    *,
    seed: int = 7,
    cutoff: dt.date = DEFAULT_CUTOFF,
    history_days: int = DEFAULT_HISTORY_DAYS,
    label_window_days: int = LABEL_WINDOW_DAYS,
) -> dict[str, pd.DataFrame]:
    """Three raw tables as DataFrames (string/typed columns as the files will hold them)."""
    rng = np.random.default_rng(seed)
    day = np.timedelta64(1, "D")
    end = np.datetime64(cutoff + dt.timedelta(days=label_window_days), "D")  # last drop day
    start = np.datetime64(cutoff - dt.timedelta(days=history_days), "D")
    cutoff64 = np.datetime64(cutoff, "D")

    # ---- diners: 65% signed up before the export started (backfill), the rest during it
    n = n_diners
    before = rng.random(n) < 0.65
    signup = np.where(
        before,
        start - rng.integers(1, 3 * 365, n) * day,
        start + rng.integers(0, int((end - start) / day) + 1, n) * day,
    ).astype("datetime64[D]")
    segment_idx = rng.choice(len(source.SEGMENTS), n, p=[0.25, 0.15, 0.3, 0.1, 0.2])
    region_idx = rng.choice(len(source.REGIONS), n, p=[0.2, 0.2, 0.2, 0.15, 0.25])
    seg_rate = np.array([1.2, 0.9, 1.1, 0.8, 0.5])[segment_idx]
    rate = np.exp(rng.normal(np.log(0.42), 0.8, n)) * seg_rate  # orders per 30 days
    spend = (
        np.exp(rng.normal(np.log(24.0), 0.35, n)) * np.array([1.5, 0.7, 1.1, 1.0, 0.9])[segment_idx]
    )
    engagement = rng.beta(2.0, 4.0, n)
    loyalty = (rng.random(n) < 0.2 + 0.5 * engagement).astype(int)
    churns = rng.random(n) < 0.35
    churn_at = (start + rng.integers(0, int((end - start) / day), n) * day).astype("datetime64[D]")
    churn_at = np.where(churns, churn_at, end + day)
    diner_ids = np.char.add("D", np.char.zfill(np.arange(1, n + 1).astype(str), 8))

    diners = pd.DataFrame(
        {
            "diner_id": diner_ids,
            "signup_date": signup,
            "segment": np.array(source.SEGMENTS)[segment_idx],
            "region": np.array(source.REGIONS)[region_idx],
            "loyalty_member": loyalty,
        }
    )
    # drop day: the backfill file for everyone before the export, then the signup day
    diners["dt"] = np.where(signup < start, start, signup).astype("datetime64[D]")

    # ---- orders: Poisson count over each diner's active span, uniform times inside it
    active_from = np.maximum(signup, start)
    active_to = np.minimum(churn_at, end + day)  # exclusive
    span_days = np.maximum((active_to - active_from) / day, 0).astype(float)
    counts = rng.poisson(rate * span_days / 30.0)
    idx = np.repeat(np.arange(n), counts)
    m = idx.size
    offs = rng.random(m) * span_days[idx] * 86400.0
    order_ts = active_from[idx].astype("datetime64[s]") + offs.astype("int64").astype(
        "timedelta64[s]"
    )
    amount = np.round(spend[idx] * np.exp(rng.normal(0, 0.3, m)), 2)
    ch_p = np.array(
        [
            [0.45, 0.2, 0.2, 0.15],
            [0.2, 0.3, 0.2, 0.3],
            [0.3, 0.25, 0.3, 0.15],
            [0.7, 0.2, 0.08, 0.02],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    u = rng.random(m)
    channel_idx = (u[:, None] > np.cumsum(ch_p[segment_idx[idx]], axis=1)).sum(axis=1)
    channel_idx = np.minimum(channel_idx, len(source.CHANNELS) - 1)
    store = region_idx[idx] * 10 + rng.integers(0, 10, m)
    orders = pd.DataFrame(
        {
            "order_id": np.char.add("O", np.char.zfill(np.arange(1, m + 1).astype(str), 10)),
            "diner_id": diner_ids[idx],
            "order_ts": order_ts,
            "amount": amount,
            "channel": np.array(source.CHANNELS)[channel_idx],
            "store_id": np.char.add("S", np.char.zfill(store.astype(str), 3)),
        }
    ).sort_values("order_ts", kind="stable")
    orders["dt"] = orders["order_ts"].values.astype("datetime64[D]")

    # ---- email campaigns: regular ones reach a random share; the last one (day after the cutoff)
    # reaches everybody signed up by then and carries the label window.
    campaign_days = list(np.arange(start + 3 * day, cutoff64 - 6 * day, CAMPAIGN_EVERY_DAYS * day))
    campaign_days.append(cutoff64 + day)
    frames = []
    ev_counter = 0
    for c_no, cday in enumerate(campaign_days, start=1):
        last = c_no == len(campaign_days)
        eligible = signup < cday
        if not last:
            eligible &= rng.random(n) < CAMPAIGN_REACH
        who = np.flatnonzero(eligible)
        if who.size == 0:
            continue
        # activity "now": diners who churned before the send barely respond
        alive = churn_at[who] > cday
        recent = np.log(rate[who] / 0.42) * alive - 2.2 * (~alive)
        logit = (
            -3.1
            + 0.9 * recent
            + 0.55 * np.log(spend[who] / 24.0) / 0.35
            + 3.0 * (engagement[who] - 0.33)
            + 0.3 * loyalty[who]
        )
        p_conv = _sigmoid(logit)
        p_open = np.clip(0.08 + 0.85 * engagement[who], 0, 0.95)
        p_click = np.clip(0.15 + 0.5 * engagement[who], 0, 0.9)
        conv = rng.random(who.size) < p_conv
        opened = conv | (rng.random(who.size) < p_open)
        clicked = conv | (opened & (rng.random(who.size) < p_click))
        send_ts = cday.astype("datetime64[s]") + (
            9 * 3600 + rng.integers(0, 7200, who.size)
        ).astype("timedelta64[s]")
        open_ts = send_ts + (rng.exponential(20 * 3600, who.size) + 60).astype("int64").astype(
            "timedelta64[s]"
        )
        click_ts = open_ts + rng.integers(5, 600, who.size).astype("timedelta64[s]")
        conv_ts = click_ts + (rng.exponential(2.5 * 86400, who.size) + 300).astype("int64").astype(
            "timedelta64[s]"
        )
        camp = f"C{cday.astype(dt.date):%Y%m%d}"
        for mask, ts, etype in (
            (np.ones(who.size, bool), send_ts, "send"),
            (opened, open_ts, "open"),
            (clicked, click_ts, "click"),
            (conv, conv_ts, "conversion"),
        ):
            k = int(mask.sum())
            frames.append(
                pd.DataFrame(
                    {
                        "event_no": np.arange(ev_counter, ev_counter + k),
                        "diner_id": diner_ids[who[mask]],
                        "campaign_id": camp,
                        "event_type": etype,
                        "event_ts": ts[mask],
                    }
                )
            )
            ev_counter += k
    events = pd.concat(frames, ignore_index=True)
    events = events[events["event_ts"] < (end + day).astype("datetime64[s]")]
    events = events.sort_values("event_ts", kind="stable")
    events.insert(0, "event_id", "E" + events.pop("event_no").astype(str).str.zfill(10))
    events["dt"] = events["event_ts"].values.astype("datetime64[D]")
    return {"diners": diners, "orders": orders, "email_events": events}


def _format(table: str, df: pd.DataFrame) -> pd.DataFrame:
    out = df.drop(columns=["dt"]).copy()
    for col, kind in source.TABLES[table].columns.items():
        if kind == "date":
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%d")
        elif kind == "timestamp":
            out[col] = pd.to_datetime(out[col]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    return out


def write_raw(tables: dict[str, pd.DataFrame], lake_uri: str, tenant: str) -> dict[str, int]:
    """Write one file per table and drop day. Returns the number of files per table."""
    files: dict[str, int] = {}
    end_day = max(str(pd.Timestamp(df["dt"].max()).date()) for df in tables.values())
    for name, df in tables.items():
        spec = source.TABLES[name]
        formatted = _format(name, df)
        days = pd.to_datetime(df["dt"]).dt.strftime("%Y-%m-%d").to_numpy()
        order = np.argsort(days, kind="stable")
        days_sorted = days[order]
        formatted = formatted.iloc[order]
        uniq, first = np.unique(days_sorted, return_index=True)
        bounds = dict(
            zip(uniq, zip(first, [*list(first[1:]), len(days_sorted)], strict=False), strict=False)
        )
        # a source system drops a file every day, also on a day without rows
        all_days = pd.date_range(uniq[0], end_day).strftime("%Y-%m-%d") if len(uniq) else []
        for d in all_days:
            lo, hi = bounds.get(d, (0, 0))
            part = formatted.iloc[lo:hi]
            uri = raw_schema.raw_file_path(lake_uri, tenant, spec, d)
            if spec.fmt == "csv":
                data = part.to_csv(index=False, lineterminator="\n").encode()
            else:
                data = part.to_json(orient="records", lines=True).encode()
            lake.write_bytes_atomic(uri, data)
        files[name] = len(all_days)
    return files


def example_data(lake_uri: str, tenant: str, diners: int) -> dt.date:
    """A model's ``example_data`` hook: a deterministic raw zone of ``diners``; its data date."""
    write_raw(generate(diners, seed=11), lake_uri, tenant)
    return DEFAULT_DATA_DATE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mlmodels.restaurant_chain.datagen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--customer", required=True, help="tenant id (the platform's customer)")
    p.add_argument(
        "--lake", default=os.environ.get("LAKE_URI"), help="lake URI (default $LAKE_URI)"
    )
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--diners", type=int, help="number of diners (overrides --size)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--cutoff",
        type=dt.date.fromisoformat,
        default=DEFAULT_CUTOFF,
        help="the training cutoff; drops go on for the label window after it, up to the data date "
        "to run the pipeline with",
    )
    p.add_argument("--history-days", type=int, default=DEFAULT_HISTORY_DAYS)
    args = p.parse_args(argv)
    if not args.lake:
        p.error("--lake or LAKE_URI is required")
    n = args.diners or SIZES[args.size]
    t0 = time.monotonic()
    tables = generate(n, seed=args.seed, cutoff=args.cutoff, history_days=args.history_days)
    files = write_raw(tables, args.lake, args.customer)
    info: dict[str, Any] = {
        "tenant": args.customer,
        "seed": args.seed,
        "diners": n,
        "rows": {k: len(v) for k, v in tables.items()},
        "files": files,
        "training_cutoff": args.cutoff.isoformat(),
        "data_date": (args.cutoff + dt.timedelta(days=LABEL_WINDOW_DAYS)).isoformat(),
        "label_window_days": LABEL_WINDOW_DAYS,
        "history_days": args.history_days,
    }
    lake.write_json_atomic(
        lake.join(args.lake, "raw", f"customer={args.customer}", "_datagen.json"), info
    )
    info["seconds"] = round(time.monotonic() - t0, 1)
    json.dump(info, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
