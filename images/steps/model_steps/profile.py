"""Feature profiles and drift (population stability index) against a training reference.

A profile is a small JSON document: per numeric feature the reference's quantile bin edges and the
share of rows in each bin, per categorical feature the share of each value. Comparing a new table
with it needs only the profile, not the reference data.

Where the reference comes from, in order:

1. ``validation.reference_profile_uri`` in STEP_CONFIG: a profile JSON, or a committed feature table
   folder (one with ``_MANIFEST.json``), i.e. a reference dataset;
2. the current champion's profile:
   ``<lake>/evaluation/<pipeline>/customer=<tenant>/champion/feature_profile.json``
   (whoever promotes a champion copies the profile of its training table there; every validate run
   writes the profile of its table next to its results, ready to be copied);
3. the first-run baseline ``<lake>/reference/<pipeline>/customer=<tenant>/feature_profile.json``,
   written by the first run that passes validation when neither of the above exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlplatform_contract.layout import CustomerLayout
from model_steps import lake
from model_steps.model_api import Model

N_BINS = 10
EPS = 1e-4


def build_profile(df: Any, model: Model, *, source: str = "") -> dict[str, Any]:
    """The profile of ``model``'s inputs in ``df`` (its numeric and categorical features)."""
    numeric: dict[str, Any] = {}
    for col in model.numeric_features:
        if col not in df.columns:
            continue
        x = df[col].to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            continue
        edges = np.unique(np.quantile(x, np.linspace(0, 1, N_BINS + 1)))
        inner = edges[1:-1]
        counts = np.bincount(np.searchsorted(inner, x, side="right"), minlength=len(inner) + 1)
        numeric[col] = {
            "edges": [float(e) for e in inner],
            "shares": [float(c) / x.size for c in counts],
            "mean": float(x.mean()),
            "std": float(x.std()),
        }
    categorical: dict[str, Any] = {}
    for col in model.categorical_features:
        if col in df.columns:
            vc = df[col].astype(str).value_counts(normalize=True)
            categorical[col] = {str(k): float(v) for k, v in vc.items()}
    label = model.label_column
    return {
        "version": 1,
        "source": source,
        "rows": len(df),
        # the label's mean: the positive rate of a classifier, the mean target of a regression
        "label_rate": float(df[label].mean()) if label in df.columns and len(df) else None,
        "numeric": numeric,
        "categorical": categorical,
    }


def psi(expected: list[float], actual: list[float]) -> float:
    e = np.clip(np.asarray(expected, float), EPS, None)
    a = np.clip(np.asarray(actual, float), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift(reference: dict[str, Any], df: Any) -> dict[str, float]:
    """PSI of every profiled feature of ``df`` against ``reference``."""
    out: dict[str, float] = {}
    for col, ref in reference.get("numeric", {}).items():
        if col not in df.columns:
            continue
        x = df[col].to_numpy(dtype=float)
        x = x[~np.isnan(x)]
        if x.size == 0:
            continue
        counts = np.bincount(
            np.searchsorted(np.asarray(ref["edges"], float), x, side="right"),
            minlength=len(ref["shares"]),
        )
        out[col] = round(psi(ref["shares"], list(counts / x.size)), 4)
    for col, ref in reference.get("categorical", {}).items():
        if col not in df.columns:
            continue
        vc = df[col].astype(str).value_counts(normalize=True).to_dict()
        keys = sorted(set(ref) | set(vc))
        out[col] = round(psi([ref.get(k, 0.0) for k in keys], [vc.get(k, 0.0) for k in keys]), 4)
    return out


def champion_profile_uri(lake_uri: str, pipeline: str, tenant: str) -> str:
    return CustomerLayout(lake_uri, pipeline, tenant).champion_profile


def baseline_profile_uri(lake_uri: str, pipeline: str, tenant: str) -> str:
    return CustomerLayout(lake_uri, pipeline, tenant).baseline_profile


def last_population_profile_uri(lake_uri: str, pipeline: str, tenant: str) -> str:
    """The profile of the last population that passed validation: the next one's drift reference."""
    return CustomerLayout(lake_uri, pipeline, tenant).last_population_profile


def load_reference(uri: str, model: Model) -> dict[str, Any]:
    """A profile from a profile JSON or from a committed feature table (a reference dataset)."""
    if uri.endswith(".json"):
        return lake.read_json(uri)
    return build_profile(read_table(uri), model, source=uri)


def read_table(table_uri: str) -> Any:
    """A committed table (through its manifest) as a pandas frame."""
    import pyarrow.parquet as pq

    manifest = lake.read_manifest(table_uri)
    fs, _ = lake.filesystem(table_uri)
    paths = [
        lake.filesystem(lake.join(table_uri, manifest["attempt"], f))[1] for f in manifest["files"]
    ]
    table = pq.ParquetDataset(paths, filesystem=fs, partitioning=None).read()
    df = table.to_pandas()
    # keep the committed schema's column order (extra columns, if any, at the end)
    schema = list(manifest.get("schema") or [])
    order = [c for c in schema if c in df.columns] + [c for c in df.columns if c not in schema]
    return df[order]
