"""Training building blocks: the data plan (split + shard), the tf.data input pipeline, the Keras
model, holdout metrics, and checkpoints in the lake. The step body (:mod:`model_steps.steps.train`)
wires them together under Horovod.

Split and shard, both deterministic, so every rank and every retry agrees without talking:

* **holdout**: a diner is in the holdout when ``crc32(seed:diner_id) mod 10000 < holdout_fraction *
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
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_steps import lake
from model_steps.features import KEY, LABEL, NUMERIC_FEATURES
from model_steps.raw_schema import REGIONS, SEGMENTS

log = logging.getLogger(__name__)

CATEGORICAL: dict[str, tuple[str, ...]] = {"segment": tuple(SEGMENTS), "region": tuple(REGIONS)}
NUMERIC: tuple[str, ...] = tuple(NUMERIC_FEATURES)
INPUT_COLUMNS: tuple[str, ...] = (*NUMERIC, *CATEGORICAL)

TRAINING_DEFAULTS: dict[str, Any] = {
    "epochs": 8,
    "batch_size": 1024,
    "learning_rate": 1e-3,
    "warmup_epochs": 1,
    "hidden_units": [128, 64],
    "dropout": 0.1,
    "holdout_fraction": 0.2,
    "seed": 42,
}


def training_settings(config: dict[str, Any]) -> dict[str, Any]:
    from model_steps.contract import UsageError

    given = config.get("training") or {}
    if not isinstance(given, dict):
        raise UsageError("STEP_CONFIG['training'] must be an object")
    s = {**TRAINING_DEFAULTS, **given}
    if int(s["epochs"]) <= 0 or int(s["batch_size"]) <= 0:
        raise UsageError("STEP_CONFIG training.epochs and batch_size must be positive")
    if not 0 < float(s["holdout_fraction"]) < 1:
        raise UsageError("STEP_CONFIG training.holdout_fraction must be in (0, 1)")
    s["hidden_units"] = [int(u) for u in s["hidden_units"]]
    return s


# ---------------------------------------------------------------- data


def holdout_mask(keys: np.ndarray, fraction: float, seed: int) -> np.ndarray:
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


def read_shard(
    table_uri: str, *, split: str, rank: int, size: int, holdout_fraction: float, seed: int
) -> Shard:
    """This rank's rows of ``split`` ("train", "holdout" or "all"; size=1 reads everything)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fs, units, _ = table_units(table_uri)
    by_unit = len(units) >= size
    mine = units[rank::size] if by_unit else units
    cols = [KEY, *INPUT_COLUMNS, LABEL]
    parts = []
    for path, group in mine:
        with fs.open(path, "rb") as fh:
            parts.append(pq.ParquetFile(fh).read_row_group(group, columns=cols))
    table = pa.concat_tables(parts) if parts else None
    if table is None or table.num_rows == 0:
        return Shard(
            {c: np.zeros(0, np.float32) for c in NUMERIC}
            | {c: np.zeros(0, object) for c in CATEGORICAL},
            np.zeros(0, np.float32),
        )
    keep = np.ones(table.num_rows, bool)
    if not by_unit and size > 1:
        keep &= (np.arange(table.num_rows) % size) == rank
    if split != "all":
        hold = holdout_mask(
            table.column(KEY).to_numpy(zero_copy_only=False), holdout_fraction, seed
        )
        keep &= hold if split == "holdout" else ~hold
    idx = np.flatnonzero(keep)
    columns: dict[str, np.ndarray] = {}
    for c in NUMERIC:
        columns[c] = table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)[idx]
    for c in CATEGORICAL:
        columns[c] = table.column(c).to_numpy(zero_copy_only=False).astype(str)[idx]
    label = table.column(LABEL).to_numpy(zero_copy_only=False).astype(np.float32)[idx]
    return Shard(columns, label)


def make_dataset(
    shard: Shard, *, batch_size: int, shuffle: bool, seed: int, repeat: bool = False
) -> Any:
    """A tf.data pipeline over a shard held in memory: per epoch a fresh permutation of row
    indices, batched, then one vectorized gather per batch (no per-row Python or per-element ops)."""
    import tensorflow as tf

    n = shard.rows
    tensors = {c: tf.constant(v.reshape(-1, 1)) for c, v in shard.columns.items()}
    label = tf.constant(shard.label.reshape(-1, 1))
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size)

    def gather(idx: Any) -> Any:
        return {c: tf.gather(t, idx) for c, t in tensors.items()}, tf.gather(label, idx)

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def numeric_moments(shard: Shard) -> np.ndarray:
    """[count, sum..., sum of squares...] of the numeric columns: summed over ranks (allreduce) they
    give the whole training split's mean and variance for the Normalization layer."""
    x = np.stack([shard.columns[c].astype(np.float64) for c in NUMERIC], axis=1)
    return np.concatenate([[float(len(x))], x.sum(axis=0), (x * x).sum(axis=0)])


def moments_to_stats(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = len(NUMERIC)
    count = max(m[0], 1.0)
    mean = m[1 : 1 + k] / count
    var = np.maximum(m[1 + k :] / count - mean * mean, 1e-6)
    return mean.astype(np.float32), var.astype(np.float32)


# ---------------------------------------------------------------- model


def build_model(
    mean: np.ndarray, variance: np.ndarray, *, hidden_units: list[int], dropout: float, seed: int
) -> Any:
    """A Keras MLP with its preprocessing inside, so the served model takes raw feature columns:
    numeric columns normalized with the training split's statistics, categoricals one-hot through
    a fixed vocabulary (unknown values get their own out-of-vocabulary slot)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inputs = {c: tf.keras.Input(shape=(1,), name=c, dtype=tf.float32) for c in NUMERIC}
    inputs |= {c: tf.keras.Input(shape=(1,), name=c, dtype=tf.string) for c in CATEGORICAL}
    numeric = tf.keras.layers.Concatenate(name="numeric")([inputs[c] for c in NUMERIC])
    numeric = tf.keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(numeric)
    encoded = [
        tf.keras.layers.StringLookup(
            vocabulary=list(vocab), output_mode="one_hot", name=f"{c}_onehot"
        )(inputs[c])
        for c, vocab in CATEGORICAL.items()
    ]
    x = tf.keras.layers.Concatenate(name="features")([numeric, *encoded])
    for i, units in enumerate(hidden_units):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = tf.keras.layers.Dropout(dropout, seed=seed + i, name=f"dropout_{i}")(x)
    out = tf.keras.layers.Dense(1, activation="sigmoid", name="propensity")(x)
    return tf.keras.Model(inputs=inputs, outputs=out, name="propensity_mlp")


# ---------------------------------------------------------------- metrics


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Exact ROC AUC (Mann-Whitney, ties counted half)."""
    y = np.asarray(y).ravel().astype(bool)
    p = np.asarray(p, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sorted_p = p[order]
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def holdout_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64).ravel()
    p = np.clip(np.asarray(p, dtype=np.float64).ravel(), 1e-7, 1 - 1e-7)
    return {
        "roc_auc": round(roc_auc(y, p), 6),
        "log_loss": round(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), 6),
        "brier": round(float(np.mean((p - y) ** 2)), 6),
        "rows": len(y),
        "positives": int(y.sum()),
    }


# ---------------------------------------------------------------- checkpoints


class Checkpoints:
    """Per-epoch training checkpoints of one run in the lake::

        <run dir>/checkpoints/epoch=0003/ckpt-*.{index,data-*}   tf.train.Checkpoint (model+optimizer)
        <run dir>/checkpoints/_LATEST.json                      {"epoch": 3, "dir": "epoch=0003", ...}

    ``_LATEST.json`` is written last (the commit point): a run killed while uploading leaves the
    previous checkpoint in force. Older epoch folders are removed after each commit (keep 1).
    """

    def __init__(self, run_dir_uri: str) -> None:
        self.uri = lake.join(run_dir_uri, "checkpoints")
        self.latest_uri = lake.join(self.uri, "_LATEST.json")

    def latest(self) -> dict[str, Any] | None:
        return lake.read_json(self.latest_uri) if lake.exists(self.latest_uri) else None

    def save(self, ckpt: Any, epoch: int, extra: dict[str, Any]) -> str:
        name = f"epoch={epoch:04d}"
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            prefix = ckpt.write(os.path.join(tmp, "ckpt"))
            files = sorted(os.listdir(tmp))
            target = lake.join(self.uri, name)
            if lake.is_local(target):
                dest = lake.local_path(target)
                if os.path.exists(dest):
                    shutil.rmtree(dest)
                shutil.copytree(tmp, dest)
            else:
                lake.put_tree(tmp, target)
        lake.write_json_atomic(
            self.latest_uri,
            {
                "epoch": epoch,
                "dir": name,
                "prefix": os.path.basename(prefix),
                "files": files,
                **extra,
            },
        )
        for d in lake.list_dirs(self.uri):
            if d.startswith("epoch=") and d != name:
                lake.remove_tree(lake.join(self.uri, d))
        return lake.join(self.uri, name)

    def restore(self, ckpt: Any, latest: dict[str, Any]) -> None:
        fs, _ = lake.filesystem(self.uri)
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            for f in latest["files"]:
                src = lake.filesystem(lake.join(self.uri, latest["dir"], f))[1]
                fs.get(src, os.path.join(tmp, f))
            ckpt.read(os.path.join(tmp, latest["prefix"])).expect_partial()


def write_json(uri: str, obj: Any) -> None:
    lake.write_json_atomic(uri, obj)


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
