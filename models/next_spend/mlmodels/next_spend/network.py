"""A wide-and-deep regressor: a linear path over the inputs plus a small deep path, summed, with a
softplus so expected spend is never negative."""

from __future__ import annotations

from typing import Any

from model_steps.model_api import ModelContext, NetworkInputs


def network(inputs: NetworkInputs, ctx: ModelContext) -> Any:
    import tensorflow as tf

    s = ctx.settings
    x = inputs.features
    wide = tf.keras.layers.Dense(1, name="wide")(x)
    deep = x
    for i, units in enumerate(s.deep_units):
        deep = tf.keras.layers.Dense(units, activation="relu", name=f"deep_{i}")(deep)
    # a positive start: from a bias of 0, softplus predicts ~0.7 and takes epochs to reach the mean
    start = tf.keras.initializers.Constant(s.initial_spend)
    deep = tf.keras.layers.Dense(1, name="deep_out", bias_initializer=start)(deep)
    summed = tf.keras.layers.Add(name="wide_plus_deep")([wide, deep])
    return tf.keras.layers.Activation("softplus", name="expected_spend")(summed)
