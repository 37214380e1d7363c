"""Validate step (Great Expectations 1.x): the feature table against its expectation suite and its
training reference (drift), before anything trains on it.

Outputs, committed with ``_MANIFEST.json`` last::

    <lake>/validation/<pipeline>/customer=<tenant>/run=<run key>/
        gx_validation.json       GX's validation result (every expectation, observed values)
        drift.json               PSI per feature against the reference, and which reference
        feature_profile.json     this table's profile (the next champion's drift reference)
        summary.json             what the XCom result holds
        data_docs/index.html     GX data docs (expectation suite + this validation, as HTML)
        _MANIFEST.json

Exit: critical failures (or drift >= drift_psi_fail) fail the task with the list of problems;
warnings (warning-severity expectations, drift >= drift_psi_warn, raw-zone warnings from ingest)
pass it with ``status: passed_with_warnings`` and the warnings in the result.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from typing import Any

from model_steps import lake
from model_steps.contract import StepContext, StepError
from model_steps.expectations import load_suite
from model_steps.profile import (
    baseline_profile_uri,
    build_profile,
    champion_profile_uri,
    drift,
    load_reference,
    read_table,
)
from model_steps.settings import validation_settings

log = logging.getLogger(__name__)


def suite_parameters(vs: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "min_rows": vs["min_rows"],
        "max_rows": vs["max_rows"],
        "label_rate_min": vs["label_rate_min"],
        "label_rate_max": vs["label_rate_max"],
        "lookback_days": manifest.get("lookback_days", 365),
    }


def run_gx(df: Any, suite_json: dict[str, Any], params: dict[str, Any], docs_dir: str) -> Any:
    """Validate ``df`` with GX through a checkpoint that also builds data docs into ``docs_dir``."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage-statistics calls home
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.update_data_docs_site(
        "local_site",
        {
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": docs_dir,
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    asset = context.data_sources.add_pandas("lake").add_dataframe_asset("features")
    batch_def = asset.add_batch_definition_whole_dataframe("whole_table")
    suite = context.suites.add(ExpectationSuite(**suite_json))
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name="features", data=batch_def, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="validate_features",
            validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=params)
    return next(iter(result.run_results.values()))


def describe(r: Any, where: str) -> str:
    cfg = r.expectation_config
    kw = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
    col = kw.pop("column", None)
    res = r.result or {}
    observed = ""
    if "observed_value" in res:
        observed = f"observed {res['observed_value']!r}"
    if res.get("unexpected_count"):
        observed = (
            f"{res['unexpected_count']} of {res.get('element_count')} rows unexpected, e.g. "
            f"{res.get('partial_unexpected_list', [])[:3]}"
        )
    if res.get("partial_missing_list") is not None and cfg.type.endswith("equal_set"):
        observed += f"; missing {res['partial_missing_list']}"
    if r.exception_info and r.exception_info.get("raised_exception"):
        observed = f"could not be evaluated: {r.exception_info.get('exception_message')}"
    why = (cfg.meta or {}).get("why", "")
    args = ", ".join(f"{k}={v}" for k, v in kw.items() if k not in ("column_set", "type_list"))
    target = f"column {col}" if col else "table"
    return f"{where} {target}: {cfg.type}({args}) failed: {observed}" + (f" [{why}]" if why else "")


def resolve_reference(ctx: StepContext, vs: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    candidates = [
        ("config", vs.get("reference_profile_uri")),
        ("champion", champion_profile_uri(ctx.lake_uri, ctx.pipeline, ctx.customer)),
        ("first_run_baseline", baseline_profile_uri(ctx.lake_uri, ctx.pipeline, ctx.customer)),
    ]
    for kind, uri in candidates:
        if not uri:
            continue
        probe = uri if uri.endswith(".json") else lake.join(uri, lake.MANIFEST)
        if lake.exists(probe):
            return f"{kind}:{uri}", load_reference(uri)
        if kind == "config":
            raise StepError(f"validation.reference_profile_uri {uri} does not exist")
    return "none", None


def run(ctx: StepContext) -> dict[str, Any]:
    started = time.monotonic()
    vs = validation_settings(ctx.config)
    table_uri = ctx.lake_path("features")
    manifest = lake.read_manifest(table_uri)
    df = read_table(table_uri)
    where = f"features table {table_uri}/{manifest['attempt']}:"
    suite_file, suite_json = load_suite(ctx.pipeline, vs.get("suite"))
    out_uri = ctx.lake_path("validation")

    errors: list[str] = []
    warnings: list[str] = [f"raw input: {w}" for w in manifest.get("warnings", [])]
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as docs_dir:
        vr = run_gx(df, suite_json, suite_parameters(vs, manifest), docs_dir)
        failed = {"critical": 0, "warning": 0, "info": 0}
        for r in vr.results:
            if r.success:
                continue
            sev = str(
                getattr(r.expectation_config.severity, "value", r.expectation_config.severity)
            )
            failed[sev] = failed.get(sev, 0) + 1
            msg = describe(r, where)
            (errors if sev == "critical" else warnings).append(msg)
        stats = vr.statistics

        # drift against the training reference
        ref_name, reference = resolve_reference(ctx, vs)
        profile = build_profile(df, source=table_uri)
        psi = drift(reference, df) if reference else {}
        worst = sorted(psi.items(), key=lambda kv: -kv[1])
        drifted_fail = [(c, v) for c, v in worst if v >= vs["drift_psi_fail"]]
        drifted_warn = [
            (c, v) for c, v in worst if vs["drift_psi_warn"] <= v < vs["drift_psi_fail"]
        ]
        if drifted_fail:
            errors.append(
                f"{where} drift against {ref_name}: PSI >= {vs['drift_psi_fail']} for "
                + ", ".join(f"{c}={v}" for c, v in drifted_fail)
            )
        if drifted_warn:
            warnings.append(
                f"{where} drift against {ref_name}: PSI >= {vs['drift_psi_warn']} for "
                + ", ".join(f"{c}={v}" for c, v in drifted_warn)
            )

        status = "failed" if errors else ("passed_with_warnings" if warnings else "passed")
        summary: dict[str, Any] = {
            "status": status,
            "features_uri": table_uri,
            "rows": len(df),
            "label_rate": round(float(df["label"].mean()), 6)
            if "label" in df and len(df)
            else None,
            "suite": suite_file,
            "expectations": {
                "evaluated": stats.get("evaluated_expectations"),
                "successful": stats.get("successful_expectations"),
                "failed_critical": failed["critical"],
                "failed_warning": failed["warning"],
            },
            "drift": {
                "reference": ref_name,
                "max_psi": worst[0][1] if worst else None,
                "top": dict(worst[:5]),
                "warn_at": vs["drift_psi_warn"],
                "fail_at": vs["drift_psi_fail"],
            },
            "errors": errors,
            "warnings": warnings,
            "validation_uri": out_uri,
            "gx_validation_uri": lake.join(out_uri, "gx_validation.json"),
            "data_docs_uri": lake.join(out_uri, "data_docs", "index.html"),
            "profile_uri": lake.join(out_uri, "feature_profile.json"),
        }
        lake.put_tree(docs_dir, lake.join(out_uri, "data_docs"))
    lake.write_json_atomic(lake.join(out_uri, "gx_validation.json"), vr.to_json_dict())
    lake.write_json_atomic(
        lake.join(out_uri, "drift.json"),
        {
            "reference": ref_name,
            "psi": psi,
            "warn_at": vs["drift_psi_warn"],
            "fail_at": vs["drift_psi_fail"],
        },
    )
    lake.write_json_atomic(lake.join(out_uri, "feature_profile.json"), profile)
    lake.write_json_atomic(lake.join(out_uri, "summary.json"), summary)
    lake.write_json_atomic(
        lake.join(out_uri, lake.MANIFEST),
        {
            "status": status,
            "files": [
                "gx_validation.json",
                "drift.json",
                "feature_profile.json",
                "summary.json",
                "data_docs/index.html",
            ],
        },
    )
    if reference is None and not errors:
        lake.write_json_atomic(
            baseline_profile_uri(ctx.lake_uri, ctx.pipeline, ctx.customer), profile
        )
        summary["drift"]["reference"] = "none: this run's profile is now the first-run baseline"
    summary["seconds"] = round(time.monotonic() - started, 1)
    for w in warnings:
        log.warning("validation warning: %s", w)
    if errors:
        raise StepError(
            f"validation failed ({len(errors)} error(s); data docs: "
            f"{summary['data_docs_uri']}):\n  - " + "\n  - ".join(errors)
        )
    return summary
