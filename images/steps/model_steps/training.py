"""Training building blocks for any model: the data plan (split + shard), the tf.data input
pipeline and the platform's input layers under the model's network (checkpoints in the lake:
model_steps.checkpoints). The
step body (:mod:`model_steps.steps.train`)
wires them together under Horovod.

Split and shard, both deterministic, so every rank and every retry agrees without talking:

* **holdout**: an entity is in the holdout when ``crc32(seed:key) mod 10000 < holdout_fraction *
  10000`` (stable across runs, independent of row order);
* **shard**: the table's parquet row groups are the units; with at least as many units as ranks,
  rank r reads only units ``r, r+size, …``; otherwise (small tables: one file, one row group) every
  rank reads the unit and keeps rows ``i mod size == r``. Ranks train the same number of steps per
  epoch (the smallest shard decides), or allreduce would wait forever on the rank with one batch more.

Imports of TensorFlow stay inside functions: the module is importable without it.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_steps import lake
from model_steps.model_api import Model, ModelContext, NetworkInputs

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- data


VALIDATION_SALT = "validation"


def holdout_mask(keys: np.ndarray, fraction: float, seed: int | str) -> np.ndarray:
    prefix = f"{seed}:".encode()
    buckets = np.fromiter(
        (zlib.crc32(prefix + str(k).encode()) % 10_000 for k in keys),
        dtype=np.int64,
        count=len(keys),
    )
    return buckets < round(fraction * 10_000)


@dataclass(frozen=True)
class Shard:
    """One rank's rows of one split, as named numpy columns (numeric as float32, strings as str)."""

    columns: dict[str, np.ndarray]
    label: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.label)


def table_units(table_uri: str) -> tuple[Any, list[tuple[str, int]], dict[str, Any]]:
    """(filesystem, [(path, row group)], manifest) of a committed table."""
    import pyarrow.parquet as pq

    manifest = lake.read_manifest(table_uri)
    fs, _ = lake.filesystem(table_uri)
    units = []
    for f in manifest["files"]:
        path = lake.filesystem(lake.join(table_uri, manifest["attempt"], f))[1]
        with fs.open(path, "rb") as fh:
            n = pq.ParquetFile(fh).metadata.num_row_groups
        units.extend((path, g) for g in range(n))
    return fs, units, manifest


def split_mask(
    keys: np.ndarray, split: str, holdout_fraction: float, seed: int,
    validation_fraction: float = 0.0,
) -> np.ndarray:  # fmt: skip
    """Which of ``keys`` are in ``split``: "train" or "holdout" (the gate's), or a tuning trial's
    "fit" and "validation" parts of the training split (a hash salted differently from the
    holdout's). The one definition of the splits, for the Horovod shards and a single-process fit."""
    hold = holdout_mask(keys, holdout_fraction, seed)
    if split == "holdout":
        return hold
    if split not in ("train", "fit", "validation"):
        raise ValueError(f"unknown split {split!r}")
    keep = ~hold
    if split in ("fit", "validation"):
        val = holdout_mask(keys, validation_fraction, f"{seed}:{VALIDATION_SALT}")
        keep &= val if split == "validation" else ~val
    return keep


def read_shard(
    table_uri: str,
    model: Model,
    *,
    split: str,
    rank: int,
    size: int,
    holdout_fraction: float,
    seed: int,
    validation_fraction: float = 0.0,
) -> Shard:
    """This rank's rows of ``split`` ("train", "holdout" or "all"; size=1 reads everything).

    Tuning trials split the training split once more: "validation" (``validation_fraction`` of it,
    by a hash salted differently from the holdout's) scores them, "fit" is the rest. The holdout,
    which the gate compares candidate and champion on, is never seen by a trial."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, units, _ = table_units(table_uri)
    by_unit = len(units) >= size
    mine = units[rank::size] if by_unit else units
    key, label_col = model.key, model.label_column
    numeric, categorical = model.numeric_features, model.categorical_features
    cols = [key, *model.input_columns, label_col]
    parts = []
    for path, group in mine:
        with fs.open(path, "rb") as fh:
            parts.append(pq.ParquetFile(fh).read_row_group(group, columns=cols))
    table = pa.concat_tables(parts) if parts else None
    if table is None or table.num_rows == 0:
        return Shard(
            {c: np.zeros(0, np.float32) for c in numeric}
            | {c: np.zeros(0, object) for c in categorical},
            np.zeros(0, np.float32),
        )
    keep = np.ones(table.num_rows, bool)
    if not by_unit and size > 1:
        keep &= (np.arange(table.num_rows) % size) == rank
    if split != "all":
        keys = table.column(key).to_numpy(zero_copy_only=False)
        keep &= split_mask(keys, split, holdout_fraction, seed, validation_fraction)
    idx = np.flatnonzero(keep)
    columns: dict[str, np.ndarray] = {}
    for c in numeric:
        columns[c] = table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)[idx]
    for c in categorical:
        columns[c] = table.column(c).to_numpy(zero_copy_only=False).astype(str)[idx]
    label = table.column(label_col).to_numpy(zero_copy_only=False).astype(np.float32)[idx]
    return Shard(columns, label)


NUMERIC_INPUT = "numeric"


def model_inputs(columns: Any, model: Model) -> dict[str, np.ndarray]:
    """Named feature columns (a dict of arrays or a DataFrame) -> the Keras model's inputs:
    ``numeric`` [n, len(numeric features)] float32 in declared order, one [n, 1] str per
    categorical (one matrix, not one tensor per column: a batch is a few gathers)."""
    numeric = model.numeric_features
    out = {
        NUMERIC_INPUT: np.stack(
            [np.asarray(columns[c], dtype=np.float32) for c in numeric], axis=1
        ).reshape(-1, len(numeric))
    }
    for c in model.categorical_features:
        out[c] = np.asarray(columns[c]).astype(str).reshape(-1, 1)
    return out


def make_dataset(
    shard: Shard, model: Model, *, batch_size: int, shuffle: bool, seed: int, repeat: bool = False
) -> Any:
    """A tf.data pipeline over a shard held in memory: per epoch a fresh permutation of row
    indices, batched, then one vectorized gather per batch (no per-row Python or per-element ops)."""
    import tensorflow as tf

    n = shard.rows
    # three tensors, not one per column: a batch is three gathers (measured: one gather per column
    # made the pipeline slower than the training step on CPU)
    tensors = {k: tf.constant(v) for k, v in model_inputs(shard.columns, model).items()}
    label = tf.constant(shard.label.reshape(-1, 1))
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)

    def gather(idx: Any) -> Any:
        return {k: tf.gather(t, idx) for k, t in tensors.items()}, tf.gather(label, idx)

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def numeric_moments(shard: Shard, numeric: tuple[str, ...]) -> np.ndarray:
    """[count, sum..., sum of squares...] of the numeric columns: summed over ranks (allreduce) they
    give the whole training split's mean and variance for the Normalization layer."""
    x = np.stack([shard.columns[c].astype(np.float64) for c in numeric], axis=1)
    return np.concatenate([[float(len(x))], x.sum(axis=0), (x * x).sum(axis=0)])


def moments_to_stats(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = (len(m) - 1) // 2
    count = max(m[0], 1.0)
    mean = m[1 : 1 + k] / count
    var = np.maximum(m[1 + k :] / count - mean * mean, 1e-6)
    return mean.astype(np.float32), var.astype(np.float32)


# ---------------------------------------------------------------- model


def network_inputs(model: Model, mean: np.ndarray, variance: np.ndarray) -> NetworkInputs:
    """The platform's part of every network: inputs and preprocessing inside the model, so the
    served model takes raw feature columns (numeric normalized with the training split's
    statistics, categoricals one-hot through their vocabulary, unknowns in an extra slot)."""
    import tensorflow as tf

    numeric, categorical = model.numeric_features, model.categorical_features
    inputs = {NUMERIC_INPUT: tf.keras.Input(shape=(len(numeric),), name=NUMERIC_INPUT)}
    inputs |= {c: tf.keras.Input(shape=(1,), name=c, dtype=tf.string) for c in categorical}
    parts = [
        tf.keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(
            inputs[NUMERIC_INPUT]
        )
    ]
    parts += [
        tf.keras.layers.StringLookup(
            vocabulary=list(vocab), output_mode="one_hot", name=f"{c}_onehot"
        )(inputs[c])
        for c, vocab in categorical.items()
    ]
    features = tf.keras.layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    return NetworkInputs(inputs, features, numeric, categorical)


def build_model(model: Model, ctx: ModelContext, mean: np.ndarray, variance: np.ndarray) -> Any:
    """The platform's inputs, the model's network on top: one Keras model, one output."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(ctx.platform.training.seed)
    spec = network_inputs(model, mean, variance)
    output = model.network(spec, ctx)
    return tf.keras.Model(inputs=spec.inputs, outputs=output, name=f"{model.name}_network")


def write_json(uri: str, obj: Any) -> None:
    lake.write_json_atomic(uri, obj)


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
