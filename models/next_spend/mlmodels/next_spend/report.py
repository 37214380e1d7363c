"""``spend_report``: next_spend's own step (report only, after score). It joins the run's committed
scores with the population's features and writes where the expected spend is: by region and by
favourite channel, the VIP cut-off, and a histogram; JSON + HTML in the lake, manifest last."""

from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any

from mlplatform_contract import layout
from model_steps import lake
from model_steps.features import POPULATION
from model_steps.model_api import ModelContext
from model_steps.profile import read_table
from model_steps.scoring import scores_table_uri

REPORT_ZONE = layout.REPORTS


def spend_report(ctx: Any, mctx: ModelContext) -> dict[str, Any]:
    scores, _ = lake.read_parquet_table(scores_table_uri(ctx))
    frame = scores.to_pandas().merge(read_table(ctx.lake_path(POPULATION)), on="diner_id")
    vip = max(1, round(mctx.settings.vip_fraction * len(frame)))
    cut = float(frame["prediction"].nlargest(vip).min()) if len(frame) else 0.0
    summary = {
        "diners": len(frame),
        "expected_spend_total": round(float(frame["prediction"].sum()), 2),
        "vip_cutoff": round(cut, 2),
        "by_region": _group(frame, "region"),
        "by_channel": _group(frame, "favourite_channel"),
        "histogram": _histogram(frame["prediction"]),
        "data_date": ctx.data_date.isoformat(),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    out = ctx.lake_path(REPORT_ZONE, "spend_report")
    lake.write_json_atomic(lake.join(out, "summary.json"), summary)
    lake.write_bytes_atomic(lake.join(out, "index.html"), _html(summary).encode())
    lake.write_json_atomic(lake.join(out, lake.MANIFEST), {"files": ["summary.json", "index.html"]})
    return {k: summary[k] for k in ("diners", "expected_spend_total", "vip_cutoff")} | {
        "report_uri": lake.join(out, "index.html")
    }


def _group(frame: Any, column: str) -> dict[str, dict[str, float]]:
    grouped = frame.groupby(column)["prediction"].agg(["count", "mean", "sum"])
    return {
        str(k): {"diners": int(r["count"]), "mean": round(r["mean"], 2), "sum": round(r["sum"], 2)}
        for k, r in grouped.iterrows()
    }


def _histogram(values: Any, bins: int = 10) -> list[dict[str, float]]:
    import numpy as np

    counts, edges = np.histogram(values.to_numpy(), bins=bins)
    return [
        {"from": round(float(a), 2), "to": round(float(b), 2), "diners": int(c)}
        for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]


def _html(summary: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['diners']}</td><td>{v['mean']}</td><td>{v['sum']}</td></tr>"
        for k, v in summary["by_region"].items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Expected spend</title></head><body>"
        f"<h1>Expected spend, {summary['data_date']}</h1>"
        f"<p>{summary['diners']} diners, {summary['expected_spend_total']} in total; "
        f"VIP from {summary['vip_cutoff']}.</p><table border=1><tr><th>region</th><th>diners</th>"
        f"<th>mean</th><th>sum</th></tr>{rows}</table>"
        f"<pre>{html.escape(json.dumps(summary['histogram'], indent=1))}</pre></body></html>"
    )
