"""Where scores live, shared by the score step (writer) and the publish step (reader).

``<SCORES_URI or <lake>/scores>/<pipeline>/customer=<c>/run=<key>/attempt=<id>/part-NNNNN.parquet``
with ``_MANIFEST.json`` written last (the lake's commit protocol): readers go through the manifest,
so a half-written attempt is never seen.
"""

from __future__ import annotations

from model_steps import lake
from model_steps.contract import StepContext

ENV_SCORES_URI = "SCORES_URI"
SCORE_COLUMNS = ("diner_id", "score", "model_version")


def scores_table_uri(ctx: StepContext) -> str:
    root = ctx.env.get(ENV_SCORES_URI) or lake.join(ctx.lake_uri, "scores")
    return lake.join(root, ctx.pipeline, f"customer={ctx.customer}", f"run={ctx.run_key}")
