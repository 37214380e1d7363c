"""The ``model:`` settings section of preferred_channel."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    boosting_rounds: int = Field(40, ge=1, le=2000, description="LightGBM boosting rounds (most)")
    learning_rate: float = Field(0.1, gt=0, le=1, description="LightGBM shrinkage per round")
    num_leaves: int = Field(15, ge=2, le=1024, description="leaves per tree")
    min_child_samples: int = Field(20, ge=1, description="fewest diners in a leaf")
    early_stopping_rounds: int = Field(
        10, ge=0, description="stop when the holdout's log loss has not improved for this many "
        "rounds (0: never stop early)"
    )  # fmt: skip
    top_fraction: float = Field(
        0.2, gt=0, le=1, description="share of scored diners pushed: those likeliest to order"
    )
    segment: str = Field(
        "preferred-channel", pattern=r"^[a-z][a-z0-9_-]{0,31}$", description="CRM segment name"
    )
