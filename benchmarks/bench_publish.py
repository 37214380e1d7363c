"""CRM publish throughput: the publish step's client against a naive one-request-per-record client.

    .venv-steps/bin/python benchmarks/bench_publish.py --quick    # 2,000 records, a few seconds
    .venv-steps/bin/python benchmarks/bench_publish.py            # 20,000 records

Both send the same records (a committed scores table, top_fraction 1.0) to the local CRM receiver
(``python -m embedded.crm_receiver``, a separate process on loopback, a fresh sqlite store each):

  * naive: sequential, one POST per record (its own idempotency key), on one keep-alive connection
           (the kindest naive client: a new connection per record would be slower still);
  * step:  the publish step body itself (``model_steps.steps.publish.run``): reads the scores
           through the manifest, plans batches, sends them (default batch_size 500, concurrency 4),
           checkpoints; the whole step is timed, not only the HTTP part;
  * step + faults: the same with the receiver answering 429 (Retry-After 0.2 s) to the first 5
           batches and dropping 2 acknowledgements: the price of riding out a bad minute.

After each run the receiver's store is checked: contacts (must equal the records), duplicate writes
(records applied more than once: must be 0) and missing records. Step cases are repeated
(``--repeat``, default 3, a fresh receiver each) and their median is reported. Prints a table and writes
benchmarks/results/bench_publish-<time>.json. Timings are measurements, never test assertions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "images" / "steps"))

import pyarrow as pa  # noqa: E402

from mlmodels.customer_propensity import MODEL  # noqa: E402
from mlplatform_contract.settings import CustomerSettings  # noqa: E402
from model_steps import lake  # noqa: E402
from model_steps.contract import StepContext, run_key  # noqa: E402
from model_steps.model_api import ModelContext  # noqa: E402
from model_steps.scoring import scores_table_uri  # noqa: E402
from model_steps.steps import publish  # noqa: E402

PIPELINE, TENANT, RUN_ID = "bench_publish", "bench-foods", "manual__2026-06-29T00:00:00+00:00"
# every scored diner, with the propensity model's record (what STEP_MODEL and model: would say)
OWN = {"top_fraction": 1.0, "offer_code": "bench-offer"}
STEP_MODEL = json.dumps({"ref": "mlmodels.customer_propensity", "task": "binary_classification"})
TOKEN = "bench-token"


class Receiver:
    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "embedded.crm_receiver", "--db", str(db), "--port", "0",
             "--token", TOKEN],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.url = line.split("listening on ", 1)[1].split()[0]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKEN}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def check(self, expected: set[str]) -> dict[str, Any]:
        stats = self.call("GET", "/_stats")
        ids = {r["contact_id"] for r in self.call("GET", "/v1/contacts?limit=100000")["records"]}
        return {
            "contacts": stats["contacts"],
            "duplicate_writes": stats["duplicate_writes"],
            "missing": len(expected - ids),
            "unexpected": len(ids - expected),
            "requests": stats["counters"]["requests"],
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def records_for(n: int) -> list[dict[str, Any]]:
    """What the step would send (same selection code), for the naive client."""
    context = ModelContext(
        pipeline=PIPELINE, customer=TENANT, data_date=dt.date(2026, 6, 29), lake_uri="",
        settings=MODEL.settings(**OWN), platform=CustomerSettings(),
    )  # fmt: skip
    return list(publish.select_records(scores_uri, MODEL, context, run_key(RUN_ID))[0])


def naive(url: str, records: list[dict[str, Any]]) -> float:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.perf_counter()
    for i, record in enumerate(records):
        body = json.dumps({"records": [record]}).encode()
        conn.request("POST", "/v1/contacts:batchUpsert", body=body, headers={
            "Authorization": f"Bearer {TOKEN}", "Idempotency-Key": f"naive-{i}",
            "Content-Type": "application/json"})  # fmt: skip
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"naive client: HTTP {resp.status}")
    seconds = time.perf_counter() - started
    conn.close()
    return seconds


def step(url: str, lake_uri: str, batch_size: int, concurrency: int) -> tuple[float, dict]:
    ctx = StepContext(
        step="publish", pipeline=PIPELINE, customer=TENANT, run_id=RUN_ID,
        data_date=dt.date(2026, 6, 29),
        config={"crm": {"batch_size": batch_size, "max_concurrency": concurrency}, "model": OWN},
        env={"LAKE_URI": lake_uri, "CRM_BASE_URL": url, "CRM_API_TOKEN": TOKEN,
             "STEP_MODEL": STEP_MODEL},
    )  # fmt: skip
    lake.remove_tree(ctx.layout.publish())  # no checkpoint: send everything
    started = time.perf_counter()
    result = publish.run(ctx).model_dump()  # the typed PublishResult, as the XCom carries it
    return time.perf_counter() - started, result


def treated(result: dict[str, Any]) -> set[str]:
    """The contacts the step must deliver: its committed assignment's treated arm (the held-out
    control arm is never sent)."""
    arms, _ = lake.read_parquet_table(result["campaign_uri"], columns=["diner_id", "arm"])
    return {k for k, a in zip(*arms.to_pydict().values(), strict=True) if a == "treated"}


CASES: list[tuple[str, dict[str, Any] | None]] = [
    ("naive (1 record/request, sequential)", None),
    ("publish step", None),
    ("publish step + 429s and lost acks",
     {"fail_next": 5, "fail_status": 429, "retry_after": 0.2, "drop_ack_next": 2}),
]  # fmt: skip


def _commit_scores(lake_uri: str, n: int) -> list[str]:
    """The committed scores table the step reads (and the naive client's records come from)."""
    global scores_uri
    ids = [f"d{i:08d}" for i in range(n)]
    scores_uri = scores_table_uri(StepContext(
        step="score", pipeline=PIPELINE, customer=TENANT, run_id=RUN_ID,
        data_date=dt.date(2026, 6, 29), env={"LAKE_URI": lake_uri}))  # fmt: skip
    lake.commit_parquet_table(scores_uri, [pa.table({
        "diner_id": ids, "score": [((i * 7919) % 100_003) / 100_003 for i in range(n)],
        "model_version": ["1"] * n})])  # fmt: skip
    return ids


def _run_case(
    i: int,
    work: Path,
    lake_uri: str,
    records: list[dict[str, Any]],
    expected: set[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One case, each run against a fresh receiver whose store is checked afterwards. The naive
    run is long enough to average out noise; a step run takes well under a second, so it is
    repeated and the median reported (a bad run stops the repeats and is reported as it is)."""
    name, faults = CASES[i]
    times: list[float] = []
    for rep in range(1 if i == 0 else args.repeat):
        receiver = Receiver(work / f"crm-{i}-{rep}.sqlite")
        try:
            extra: dict[str, Any] = {}
            if i == 0:
                seconds = naive(receiver.url, records)
            else:
                if faults:
                    receiver.call("POST", "/_control", faults)
                seconds, result = step(receiver.url, lake_uri, args.batch_size, args.concurrency)
                extra = {k: result[k] for k in ("batches", "retries", "retries_by_reason",
                                                "replayed_batches")}  # fmt: skip
            check = receiver.check(expected if i == 0 else treated(result))
        finally:
            receiver.stop()
        times.append(seconds)
        if check["duplicate_writes"] or check["missing"] or check["unexpected"]:
            break
    seconds, n = statistics.median(times), len(records)
    print(f"{name}: {n / seconds:,.0f} records/s (median of {len(times)}: {seconds:.2f}s)",
          flush=True)  # fmt: skip
    return {"case": name, "records": n, "seconds": round(seconds, 3),
            "records_per_s": round(n / seconds), "runs": len(times),
            "seconds_all": [round(t, 3) for t in times], **check, **extra}  # fmt: skip


def _print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    """The table, and whether every case delivered each record exactly once."""
    hdr = ["client", "records", "seconds", "records/s", "vs naive", "requests", "contacts",
           "dup writes", "missing"]  # fmt: skip
    lines = [[r["case"], f"{r['records']:,}", f"{r['seconds']:.2f}", f"{r['records_per_s']:,}",
              f"{r['vs_naive']}x", f"{r['requests']:,}", f"{r['contacts']:,}",
              str(r["duplicate_writes"]), str(r["missing"])] for r in rows]  # fmt: skip
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(hdr)]
    print(
        f"\nCRM publish to the local receiver (batch_size {args.batch_size}, concurrency "
        f"{args.concurrency}; {os.cpu_count()} CPUs shared by client and receiver)"
    )
    for line in [hdr, *lines]:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    ok = all(r["duplicate_writes"] == 0 and r["missing"] == 0 for r in rows)
    print(f"\nstep / naive: {rows[1]['vs_naive']}x (target >= 20x at 20,000 records); "
          f"duplicates and missing: {'none' if ok else 'FOUND'}")  # fmt: skip
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="2,000 records instead of 20,000")
    ap.add_argument("--records", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each step case (median)")
    args = ap.parse_args()
    n = args.records or (2_000 if args.quick else 20_000)

    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        work = Path(tmp)
        lake_uri = f"file://{work}/lake"
        expected = set(_commit_scores(lake_uri, n))
        records = records_for(n)
        rows = [_run_case(i, work, lake_uri, records, expected, args) for i in range(len(CASES))]

    base = rows[0]["records_per_s"]
    for r in rows:
        r["vs_naive"] = round(r["records_per_s"] / base, 1)
    ok = _print_table(rows, args)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_publish-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({
        "benchmark": "publish",
        "quick": args.quick,
        "batch_size": args.batch_size,
        "max_concurrency": args.concurrency,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "results": rows,
        "ratio_step_over_naive": rows[1]["vs_naive"],
        "no_duplicates_or_missing": ok,
    }, indent=2))  # fmt: skip
    print(f"wrote {path.relative_to(ROOT)}")
    return 0 if ok else 1


scores_uri = ""

if __name__ == "__main__":
    raise SystemExit(main())
