"""The propensity network: an MLP over the platform's preprocessed inputs, sigmoid output."""

from __future__ import annotations

from typing import Any

from model_steps.model_api import ModelContext, NetworkInputs


def network(inputs: NetworkInputs, ctx: ModelContext) -> Any:
    import tensorflow as tf

    s = ctx.settings
    seed = ctx.platform.training.seed
    x = inputs.features
    for i, units in enumerate(s.hidden_units):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if s.dropout:
            x = tf.keras.layers.Dropout(s.dropout, seed=seed + i, name=f"dropout_{i}")(x)
    return tf.keras.layers.Dense(1, activation="sigmoid", name="propensity")(x)
