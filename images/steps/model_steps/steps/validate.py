"""Validate step (Great Expectations 1.x): both tables ingest wrote, against the expectation suite
and a drift reference, before anything trains on or scores them.

* the training table (``features``): the whole suite; drift against the reference
  (``validation.reference_profile_uri``, else the champion's training profile, else the first-run
  baseline; see ``resolve_reference``);
* the ``population``: the suite without its label expectations; drift against the last population
  that passed validation (like with like: scoring snapshots of successive runs), as warnings only
  (see ``run``).

Outputs, committed with ``_MANIFEST.json`` last::

    <lake>/validation/<pipeline>/customer=<tenant>/run=<run key>/
        gx_validation.json       GX's validation results per table (every expectation, observed values)
        drift.json               PSI per feature and table against its reference, and which reference
        feature_profile.json     the training table's profile (the next champion's drift reference)
        population_profile.json  the population's profile (the next run's population reference)
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
from dataclasses import dataclass, field
from typing import Any

from mlplatform_contract.results import ValidateResult
from model_steps import lake, model_loader
from model_steps.contract import CheckFailed, StepContext, StepError
from model_steps.expectations import load_suite, without_column
from model_steps.features import FEATURES, POPULATION
from model_steps.model_api import Model
from model_steps.profile import (
    build_profile,
    drift,
    load_reference,
    read_table,
)

log = logging.getLogger(__name__)


def suite_parameters(
    vs: dict[str, Any], manifest: dict[str, Any], model_settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The suite's ``$PARAMETER`` values: the platform's validation bounds, the run's lookback, and
    every scalar of the model's own settings as ``model_<name>``."""
    own = {
        f"model_{k}": v
        for k, v in (model_settings or {}).items()
        if isinstance(v, int | float | str | bool)
    }
    return {
        "min_rows": vs["min_rows"],
        "max_rows": vs["max_rows"],
        "label_rate_min": vs["label_rate_min"],
        "label_rate_max": vs["label_rate_max"],
        "lookback_days": manifest.get("lookback_days", 365),
        **own,
    }


def run_gx(
    tables: dict[str, tuple[Any, dict[str, Any]]], params: dict[str, Any], docs_dir: str
) -> dict[str, Any]:
    """Validate each ``name -> (frame, suite JSON)`` with GX; one data docs site in ``docs_dir``
    shows them all. Returns each table's validation result."""
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
    source = context.data_sources.add_pandas("lake")
    results = {}
    for name, (df, suite_json) in tables.items():
        batch_def = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole")
        suite = context.suites.add(ExpectationSuite(**suite_json))
        vd = context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=batch_def, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"validate_{name}",
                validation_definitions=[vd],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": df}, expectation_parameters=params)
        results[name] = next(iter(result.run_results.values()))
    return results


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


def resolve_reference(
    ctx: StepContext, vs: dict[str, Any], model: Model
) -> tuple[str, dict[str, Any] | None]:
    candidates = [
        ("config", vs.get("reference_profile_uri")),
        ("champion", ctx.layout.customer.champion_profile),
        ("first_run_baseline", ctx.layout.customer.baseline_profile),
    ]
    for kind, uri in candidates:
        if not uri:
            continue
        probe = uri if uri.endswith(".json") else lake.join(uri, lake.MANIFEST)
        if lake.exists(probe):
            return f"{kind}:{uri}", load_reference(uri, model)
        if kind == "config":
            raise StepError(f"validation.reference_profile_uri {uri} does not exist")
    return "none", None


@dataclass
class TableCheck:
    """One table's findings: problems that fail the task, and warnings that flag it."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def check_table(
    uri: str,
    manifest: dict[str, Any],
    df: Any,
    vr: Any,
    drift_against: tuple[str, dict[str, Any] | None],
    vs: dict[str, Any],
    *,
    drift_can_fail: bool = True,
) -> TableCheck:
    """Sort one table's GX results by severity and compare it with its drift reference; drift at
    or above ``drift_psi_fail`` is an error only where ``drift_can_fail``."""
    where = f"{manifest.get('table', 'features')} table {uri}/{manifest['attempt']}:"
    check = TableCheck()
    failed = {"critical": 0, "warning": 0, "info": 0}
    for r in vr.results:
        if r.success:
            continue
        sev = str(getattr(r.expectation_config.severity, "value", r.expectation_config.severity))
        failed[sev] = failed.get(sev, 0) + 1
        (check.errors if sev == "critical" else check.warnings).append(describe(r, where))

    ref_name, reference = drift_against
    psi = drift(reference, df) if reference else {}
    worst = sorted(psi.items(), key=lambda kv: -kv[1])
    over_fail = check.errors if drift_can_fail else check.warnings
    for lo, hi, out in (
        (vs["drift_psi_fail"], float("inf"), over_fail),
        (vs["drift_psi_warn"], vs["drift_psi_fail"], check.warnings),
    ):
        drifted = [(c, v) for c, v in worst if lo <= v < hi]
        if drifted:
            out.append(
                f"{where} drift against {ref_name}: PSI >= {lo} for "
                + ", ".join(f"{c}={v}" for c, v in drifted)
            )
    stats = vr.statistics
    check.summary = {
        "uri": uri,
        "cutoff_date": manifest.get("cutoff_date"),
        "rows": len(df),
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
            "psi": psi,
        },
    }
    return check


def without_psi(drift_summary: dict[str, Any]) -> dict[str, Any]:
    """A drift summary for the XCom result: every feature's PSI stays in drift.json."""
    return {k: v for k, v in drift_summary.items() if k != "psi"}


def run(ctx: StepContext) -> ValidateResult:
    started = time.monotonic()
    loaded = model_loader.load(ctx)
    model, vs = loaded.model, loaded.platform.validation.model_dump()
    table_uri, population_uri = ctx.lake_path(FEATURES), ctx.lake_path(POPULATION)
    manifest, population_manifest = (
        lake.read_manifest(table_uri),
        lake.read_manifest(population_uri),
    )
    df, population = read_table(table_uri), read_table(population_uri)
    suite_file, suite_json = load_suite(model)
    out_uri = ctx.layout.validation

    ref_name, reference = resolve_reference(ctx, vs, model)
    profile = build_profile(df, model, source=table_uri)
    tables_in = {
        "features": (df, suite_json),
        POPULATION: (population, without_column(suite_json, model.label_column)),
    }
    params = suite_parameters(vs, manifest, loaded.settings.model_dump(mode="json"))
    results = _run_suites(tables_in, params, out_uri)
    training = check_table(table_uri, manifest, df, results["features"], (ref_name, reference), vs)
    scored, population_profile = _check_population(
        ctx, model, (population_uri, population_manifest, population), results[POPULATION], vs
    )
    errors = training.errors + scored.errors
    warnings = [f"raw input: {w}" for w in manifest.get("warnings", [])]
    warnings += training.warnings + scored.warnings

    label = model.label_column
    status = "failed" if errors else ("passed_with_warnings" if warnings else "passed")
    drift_limits = {"warn_at": vs["drift_psi_warn"], "fail_at": vs["drift_psi_fail"]}
    tables = {"features": training.summary, POPULATION: scored.summary}
    label_rate = round(float(df[label].mean()), 6) if label in df and len(df) else None
    summary = _summary(
        (table_uri, population_uri, out_uri), (training.summary, scored.summary), label_rate,
        suite_file, drift_limits, (errors, warnings),
    )  # fmt: skip
    _commit(out_uri, results, drift_limits, tables, (profile, population_profile))
    lake.write_json_atomic(  # the failed run's summary too (status "failed"), read by no step
        lake.join(out_uri, "summary.json"),
        {**summary.model_dump(mode="json", exclude={"seconds"}), "status": status},
    )
    _write_manifest(out_uri, status)
    if not errors:
        lake.write_json_atomic(ctx.layout.customer.last_population_profile, population_profile)
    if reference is None and not errors:
        lake.write_json_atomic(ctx.layout.customer.baseline_profile, profile)
        summary.drift["reference"] = "none: this run's profile is now the first-run baseline"
    summary.seconds = round(time.monotonic() - started, 1)
    for w in warnings:
        log.warning("validation warning: %s", w)
    _raise_on(errors, summary)
    return summary


def _check_population(
    ctx: StepContext, model: Model, table: tuple[str, dict[str, Any], Any], gx_result: Any,
    vs: dict[str, Any],
) -> tuple[Any, dict[str, Any]]:  # fmt: skip
    """The population's checks and profile. It is compared with the last population that passed,
    not with a training table: a snapshot a label window later differs from its training table by
    design (campaign cycles). Its drift only warns: a real change of behaviour (a campaign to
    everybody, a season) is what has to be scored, not a reason to hold back the CRM push. Its
    suite's critical expectations (schema, nulls, types, categories, row bounds) still fail."""
    uri, manifest, population = table
    last_population = ctx.layout.customer.last_population_profile
    reference = (
        (f"last_population:{last_population}", load_reference(last_population, model))
        if lake.exists(last_population)
        else ("none: the first population", None)
    )
    profile = build_profile(population, model, source=uri)
    checked = check_table(uri, manifest, population, gx_result, reference, vs, drift_can_fail=False)
    return checked, profile


def _commit(
    out_uri: str, results: dict[str, Any], drift_limits: dict[str, float],
    tables: dict[str, dict[str, Any]], profiles: tuple[dict[str, Any], dict[str, Any]],
) -> None:  # fmt: skip
    """The GX results, every feature's PSI and both profiles, into the run's validation folder."""
    profile, population_profile = profiles
    lake.write_json_atomic(
        lake.join(out_uri, "gx_validation.json"),
        {name: vr.to_json_dict() for name, vr in results.items()},
    )
    lake.write_json_atomic(
        lake.join(out_uri, "drift.json"),
        {
            **drift_limits,
            "tables": {
                name: {"reference": t["drift"]["reference"], "psi": t["drift"]["psi"]}
                for name, t in tables.items()
            },
        },
    )
    lake.write_json_atomic(lake.join(out_uri, "feature_profile.json"), profile)
    lake.write_json_atomic(lake.join(out_uri, "population_profile.json"), population_profile)


def _write_manifest(out_uri: str, status: str) -> None:
    lake.write_json_atomic(
        lake.join(out_uri, lake.MANIFEST),
        {
            "status": status,
            "files": [
                "gx_validation.json",
                "drift.json",
                "feature_profile.json",
                "population_profile.json",
                "summary.json",
                "data_docs/index.html",
            ],
        },
    )


def _run_suites(
    tables: dict[str, tuple[Any, dict[str, Any]]], params: dict[str, Any], out_uri: str
) -> dict[str, Any]:
    """Both tables' suites through GX; the data docs go to the run's validation folder."""
    with tempfile.TemporaryDirectory(prefix="gx-docs-") as docs_dir:
        results = run_gx(tables, params, docs_dir)
        lake.put_tree(docs_dir, lake.join(out_uri, "data_docs"))
    return results


def _raise_on(errors: list[str], summary: ValidateResult) -> None:
    if errors:
        raise CheckFailed(
            f"validation failed ({len(errors)} error(s); data docs: "
            f"{summary.data_docs_uri}):\n  - " + "\n  - ".join(errors),
            "fix the data (the raw drop) or the model's features/label hooks, or, if the "
            "expectation is wrong, the model's expectations.json or its validation settings.",
        )


def _summary(
    uris: tuple[str, str, str], checked: tuple[dict[str, Any], dict[str, Any]],
    label_rate: float | None, suite_file: str, drift_limits: dict[str, float],
    problems: tuple[list[str], list[str]],
) -> ValidateResult:  # fmt: skip
    """The step's result: the training table's figures, both tables' summaries, the problems."""
    (table_uri, population_uri, out_uri), (train, scored) = uris, checked
    errors, warnings = problems
    tables = {"features": train, POPULATION: scored}
    return ValidateResult(
        status="passed_with_warnings" if warnings else "passed",
        features_uri=table_uri,
        population_uri=population_uri,
        rows=train["rows"],
        population_rows=scored["rows"],
        label_rate=label_rate,
        suite=suite_file,
        expectations=train["expectations"],
        drift={**without_psi(train["drift"]), **drift_limits},
        tables={name: {**t, "drift": without_psi(t["drift"])} for name, t in tables.items()},
        errors=errors,
        warnings=warnings,
        validation_uri=out_uri,
        gx_validation_uri=lake.join(out_uri, "gx_validation.json"),
        data_docs_uri=lake.join(out_uri, "data_docs", "index.html"),
        profile_uri=lake.join(out_uri, "feature_profile.json"),
        seconds=0.0,
    )
