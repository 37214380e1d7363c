"""The tuning stage (settings ``tuning.enabled``): random search over the model's ``search_space``,
optionally with successive halving, each trial a mapped Airflow task (docs/training.md "Tuning").

Steps, each ``python -m model_steps <step> …`` in the train image:

``tune``    plans the trials (model_steps.search_space: deterministic from tuning.seed, pipeline
            and customer, so a retry repeats them), opens the MLflow parent run (search space,
            budget) and returns ``{trial name: trial}``: the XCom the trial tasks expand over.
``trial``   one trial (``STEP_TRIAL``): the train step on the training split's "fit" part, scored
            on its "validation" part (never the gate's holdout), an MLflow child run of the parent;
            with halving, first to the rung's epochs, then (if kept) on to all epochs from its
            checkpoint. A diverged trial exits 0 with status "failed"; a crashed one fails its task.
``halve``   keeps the better half of the trials at the rung (the others: child run KILLED, tag
            ``tuning.status=pruned``) and returns the survivors: the second trial tasks' XCom.
``select``  picks the best finished trial by the objective, fails only if fewer than
            ``min_successful_trials`` finished, logs the best parameters on the parent run and
            commits the selection the final train step reads (``model_steps.tuning_lake.read_selection``).

Lake (``<lake>/tuning/<pipeline>/customer=<c>/run=<key>/``): ``plan.json``,
``trials/<name>/rung=<r>.json`` (each trial's result), ``halving.json``, ``selected.json``; trial
checkpoints under ``<lake>/models/…/run=<key>/trials/<name>/``. Every file is written once, atomically,
and reused on a retry.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from mlplatform_contract.results import RankResult, SelectResult, TrialMap, TrialResult
from mlplatform_contract.tasks import TASKS
from model_steps import lake, model_loader
from model_steps.contract import ENV_TRIAL, StepContext, StepError, UsageError
from model_steps.search_space import current_values, describe, sample_trials
from model_steps.tracking import connect, experiment_name, run_tags, tracking_uri
from model_steps.tuning_lake import SELECTION_FILE, result_uri, tuning_path

log = logging.getLogger("model_steps.tuning")


def _loaded(ctx: StepContext) -> model_loader.LoadedModel:
    loaded = model_loader.load(ctx)
    if not loaded.platform.tuning.enabled:
        raise UsageError(f"{loaded.ref.source}: step {ctx.step} runs only with tuning.enabled")
    if not loaded.model.search_space:
        raise UsageError(
            f"{loaded.ref.source}: tuning.enabled, but model {loaded.model.name} declares no "
            "search_space (model_steps.model_api.Model.search_space)"
        )
    return loaded


def _objective(loaded: model_loader.LoadedModel) -> tuple[str, bool]:
    task = TASKS[loaded.model.task]
    name = loaded.platform.tuning.objective or task.default_metric
    return name, name in task.lower_is_better


def tune(ctx: StepContext) -> TrialMap:
    """Plan the trials and open the MLflow parent run; a retry returns the committed plan."""
    loaded = _loaded(ctx)
    plan = lake.once(tuning_path(ctx, "plan.json"), lambda: _new_plan(ctx, loaded))
    return _trial_map(plan["trials"], rung=0)


def _new_plan(ctx: StepContext, loaded: model_loader.LoadedModel) -> dict[str, Any]:
    """Sample the trials and open the MLflow parent run."""
    tuning, space = loaded.platform.tuning, loaded.model.search_space
    params = sample_trials(
        space, tuning.trials, seed=tuning.seed, pipeline=ctx.pipeline, customer=ctx.customer,
        baseline=current_values(space, {"training": loaded.platform.training.model_dump(),
                                        "model": loaded.settings.model_dump(mode="json")}),
    )  # fmt: skip
    width = max(2, len(str(tuning.trials - 1)))
    trials = [
        {"name": f"trial-{i:0{width}d}", "index": i, "params": p} for i, p in enumerate(params)
    ]
    objective, lower = _objective(loaded)
    rungs = tuning.rung_epochs(loaded.platform.training.epochs)
    parent = _parent_run(ctx, loaded, trials, objective, rungs)
    log.info("planned %d trials (rungs at epochs %s), MLflow parent run %s", len(trials), rungs,
             parent)  # fmt: skip
    return {"parent_run_id": parent, "objective": objective, "lower_is_better": lower,
            "rungs": rungs, "space": describe(space), "trials": trials}  # fmt: skip


def _trial_map(trials: list[dict[str, Any]], rung: int) -> TrialMap:
    """The XCom the mapped trial task expands over: one (name, trial) pair per task."""
    return TrialMap({t["name"]: {**t, "rung": rung} for t in trials})


def _parent_run(
    ctx: StepContext, loaded: Any, trials: list[dict], objective: str, rungs: list[int]
) -> str:
    import mlflow

    connect(tracking_uri(ctx))
    experiment = mlflow.set_experiment(experiment_name(ctx.pipeline, ctx.customer))
    client = mlflow.MlflowClient()
    tags = run_tags(ctx, {"tuning.role": "parent"})
    run = client.create_run(experiment.experiment_id, run_name=f"{ctx.customer}/{ctx.run_key}/tune",
                            tags=tags)  # fmt: skip
    tuning = loaded.platform.tuning
    budget = {"trials": tuning.trials, "parallel_trials": tuning.parallel_trials,
              "seed": tuning.seed, "objective": objective, "rungs": ",".join(map(str, rungs)),
              "validation_fraction": tuning.validation_fraction}  # fmt: skip
    space = {f"space.{k}": json.dumps(v) for k, v in describe(loaded.model.search_space).items()}
    for key, value in {**{f"tuning.{k}": v for k, v in budget.items()}, **space}.items():
        client.log_param(run.info.run_id, key, value)
    client.log_dict(run.info.run_id, describe(loaded.model.search_space), "search_space.json")
    client.log_dict(run.info.run_id, trials, "trials.json")
    return run.info.run_id


def trial(ctx: StepContext) -> TrialResult | RankResult:
    """One trial, to the end of its rung (``STEP_TRIAL``, set by the mapped task)."""
    from model_steps.steps import train  # the train step's libraries: only a trial needs them

    raw = ctx.env.get(ENV_TRIAL) or ""
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict) or "name" not in spec:
        raise UsageError(f"{ENV_TRIAL} must be a trial of the tune step's result, got {raw!r}")
    plan = _plan(ctx)
    rung = int(spec.get("rung", 0))
    return train.run_trial(
        ctx, spec, parent_run_id=plan["parent_run_id"], epochs=plan["rungs"][rung],
        rung=rung, objective=plan["objective"], result=result_uri(ctx, spec["name"], rung),
        first_rung=result_uri(ctx, spec["name"], 0) if rung else None,
    )  # fmt: skip


def _plan(ctx: StepContext) -> dict[str, Any]:
    uri = tuning_path(ctx, "plan.json")
    if not lake.exists(uri):
        raise StepError(f"no tuning plan at {uri}: the tune step did not finish")
    return lake.read_json(uri)


def _results(ctx: StepContext, trials: list[dict], rung: int) -> list[dict[str, Any]]:
    """Each trial's result at a rung; a trial whose task failed has none: status "failed"."""
    out = []
    for t in trials:
        uri = result_uri(ctx, t["name"], rung)
        if lake.exists(uri):
            out.append(lake.read_json(uri))
        else:
            out.append({**t, "status": "failed", "reason": "no result: the trial's task failed"})
    return out


def _ranked(results: list[dict], lower: bool) -> list[dict]:
    ok = [r for r in results if r["status"] == "ok" and math.isfinite(r["objective"])]
    return sorted(ok, key=lambda r: (r["objective"] if lower else -r["objective"], r["index"]))


def _finish_runs(ctx: StepContext, results: list[dict], status: str, tag: str) -> None:
    """Close the child runs of trials that did not go on (pruned, or failed without a result)."""
    import mlflow

    client = mlflow.MlflowClient()
    for r in results:
        run_id = r.get("mlflow_run_id") or _trial_run_id(ctx, r["name"])
        if run_id:
            client.set_tag(run_id, "tuning.status", tag)
            client.set_terminated(run_id, status)


def _trial_run_id(ctx: StepContext, name: str) -> str | None:
    marker = lake.join(ctx.layout.trial_models(name), "mlflow_run.json")
    return lake.read_json(marker)["run_id"] if lake.exists(marker) else None


def _enough(loaded: Any, ranked: list[dict], results: list[dict], what: str) -> None:
    need = loaded.platform.tuning.min_successful_trials
    if len(ranked) < need:
        reasons = "; ".join(f"{r['name']}: {r.get('reason', r['status'])}" for r in results)
        raise StepError(f"{what}: {len(ranked)} trial(s) finished, tuning.min_successful_trials "
                        f"is {need} ({reasons})")  # fmt: skip


def halve(ctx: StepContext) -> TrialMap:
    """Successive halving's cut: the better half of the planned trials goes on to all epochs."""
    loaded = _loaded(ctx)
    plan = _plan(ctx)
    summary = lake.once(tuning_path(ctx, "halving.json"), lambda: _halving(ctx, loaded, plan))
    return _trial_map(summary["kept"], rung=1)


def _halving(
    ctx: StepContext, loaded: model_loader.LoadedModel, plan: dict[str, Any]
) -> dict[str, Any]:
    """Rank the first rung, close the pruned and failed trials' runs; what is kept."""
    connect(tracking_uri(ctx))
    results = _results(ctx, plan["trials"], rung=0)
    ranked = _ranked(results, plan["lower_is_better"])
    _enough(loaded, ranked, results, "halving")
    keep = max(1, len(plan["trials"]) // 2)
    kept = [t for t in plan["trials"] if t["name"] in {r["name"] for r in ranked[:keep]}]
    kept_names = {t["name"] for t in kept}
    pruned = [r for r in results if r["name"] not in kept_names and r["status"] == "ok"]
    _finish_runs(ctx, pruned, "KILLED", "pruned")
    _finish_runs(ctx, [r for r in results if r["status"] != "ok"], "FAILED", "failed")
    summary = {"rung_epochs": plan["rungs"][0], "kept": kept,
               "pruned": [r["name"] for r in pruned],
               "failed": [r["name"] for r in results if r["status"] != "ok"]}  # fmt: skip
    log.info("halving at epoch %d: kept %s, pruned %s", plan["rungs"][0], sorted(kept_names),
             summary["pruned"])  # fmt: skip
    return summary


def select(ctx: StepContext) -> SelectResult:
    """The best finished trial by the objective: committed for the final train step."""
    loaded = _loaded(ctx)
    return lake.once(
        tuning_path(ctx, SELECTION_FILE), lambda: _select(ctx, loaded),
        load=SelectResult.model_validate, dump=SelectResult.to_xcom,
    )  # fmt: skip


def _select(ctx: StepContext, loaded: model_loader.LoadedModel) -> SelectResult:
    plan = _plan(ctx)
    rung = len(plan["rungs"]) - 1
    halving_uri = tuning_path(ctx, "halving.json")
    if rung and not lake.exists(halving_uri):
        raise StepError(f"no halving result at {halving_uri}: the halve step did not finish")
    candidates = lake.read_json(halving_uri)["kept"] if rung else plan["trials"]
    connect(tracking_uri(ctx))
    results = _results(ctx, candidates, rung)
    ranked = _ranked(results, plan["lower_is_better"])
    _enough(loaded, ranked, results, "selection")
    _finish_runs(ctx, [r for r in results if r["status"] != "ok"], "FAILED", "failed")
    best = ranked[0]
    selected = SelectResult(
        trial=best["name"], params=best["params"], objective=plan["objective"],
        value=best["objective"], parent_run_id=plan["parent_run_id"],
        trial_run_id=best.get("mlflow_run_id"), finished=len(ranked),
        trials={r["name"]: {"status": r["status"], "objective": r.get("objective")}
                for r in _results(ctx, plan["trials"], 0)},
    )  # fmt: skip
    _close_parent(selected)
    log.info("selected %s: %s %.4f with %s", best["name"], plan["objective"], best["objective"],
             best["params"])  # fmt: skip
    return selected


def _close_parent(selected: SelectResult) -> None:
    import mlflow

    client, run_id = mlflow.MlflowClient(), selected.parent_run_id
    for name, value in selected.params.items():
        client.log_param(run_id, f"best.{name}", json.dumps(value))
    client.log_metric(run_id, f"best_{selected.objective}", selected.value)
    client.log_metric(run_id, "finished_trials", selected.finished)
    client.set_tag(run_id, "tuning.best_trial", selected.trial)
    client.set_tag(run_id, "tuning.best_run_id", selected.trial_run_id or "")
    client.set_terminated(run_id, "FINISHED")
