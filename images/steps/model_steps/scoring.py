"""Where scores live and what they hold, shared by the score step (writer) and publish (reader).

``<SCORES_URI or <lake>/scores>/<pipeline>/customer=<c>/run=<key>/attempt=<id>/part-NNNNN.parquet``
with ``_MANIFEST.json`` written last (the lake's commit protocol): readers go through the manifest,
so a half-written attempt is never seen.
"""

from __future__ import annotations

from mlplatform_contract.layout import SCORES
from model_steps.contract import StepContext
from model_steps.model_api import Model


def score_columns(model: Model) -> tuple[str, ...]:
    """The scores table's columns: the model's key, the task's output column, the model version
    (``<key>, score, model_version`` for a classifier; ``prediction`` for a regression; several
    classes: ``<key>, score_<class>…, predicted_class, model_version``)."""
    return (model.key, *model.class_columns, model.output_column, "model_version")


def scores_root(ctx: StepContext) -> str:
    """The folder of every scored run of this pipeline and customer (mlplatform_contract.layout)."""
    return ctx.layout.customer.zone(SCORES)


def scores_table_uri(ctx: StepContext, run_key: str | None = None) -> str:
    """One run's scores table (this run's unless ``run_key`` names another)."""
    return ctx.layout.customer.run(run_key or ctx.run_key).scores
