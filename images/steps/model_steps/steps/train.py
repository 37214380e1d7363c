"""Train step (TensorFlow + Horovod): the run's feature table -> the model's Keras network (the
platform's input layers under the model's ``network`` hook), tracked in MLflow (the model directory
of model_steps.model_store and its digest in the run; the evaluate gate registers it), checkpointed
every epoch so a killed run resumes. A model with a ``train_fn`` replaces only the fit. Another
framework's single-process ``fit`` gets the same checkpoint layout as a store of its own
(``FitData.checkpoints``, model_steps.checkpoints).

Every rank runs this body (``horovodrun -np N … python -m model_steps train …``; one process without
horovodrun is a world of one). Rank r reads only its shard of the table; gradients are averaged by
Horovod's DistributedOptimizer; rank 0 alone talks to MLflow, writes checkpoints and the result.

Lake outputs of rank 0 (``<run dir>`` = ``<lake>/models/<pipeline>/customer=<tenant>/run=<run key>``)::

    <run dir>/checkpoints/epoch=NNNN/…          the last completed epoch (tf.train.Checkpoint;
                                                a single-process fit: tensors.npz, state.json)
    <run dir>/checkpoints/_LATEST.json          commit point of the checkpoint, with the MLflow run id
    <run dir>/mlflow_run.json                   the MLflow run this Airflow run trains into
    <run dir>/feature_profile.json              profile of the training table (drift reference;
                                                the promotion copies it to .../champion/)
    <run dir>/train_result.json                 the step's result, written last: a retry after
                                                success returns it instead of training again
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from mlplatform_contract.results import RankResult, SelectResult, TrainResult, TrialResult
from model_steps import gate, lake, model_loader
from model_steps.checkpoints import Checkpoints, FitCheckpoints
from model_steps.contract import StepContext, StepError
from model_steps.features import FEATURES
from model_steps.model_api import FitData, Model, TrainingData
from model_steps.search_space import apply
from model_steps.tracking import (
    bound_mlflow_client,
    experiment_name,
    registered_model_name,
    run_tags,
    tracking_uri,
    wait_for_server,
)
from model_steps.training import (
    build_model,
    holdout_mask,
    make_dataset,
    moments_to_stats,
    network_inputs,
    numeric_moments,
    read_shard,
    split_mask,
)
from model_steps.tuning_lake import read_selection

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitPlan:
    """What a fit reads, how long it runs and how its MLflow run is named: the train step's own
    (training split, scored on the holdout, all epochs) or a tuning trial's (model_steps/steps/
    tuning.py: the training split's "fit" part, scored on its "validation" part, up to a rung)."""

    fit_split: str = "train"
    score_split: str = "holdout"
    epochs: int | None = None  # stop after this epoch (a halving rung); None: training.epochs
    validation_fraction: float = 0.0
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


def _configure_tf(hvd: Any) -> None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:  # one GPU per rank (a pod with N GPUs runs N ranks)
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
        tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
    else:  # share the CPU cores among the ranks of this machine instead of oversubscribing
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        tf.config.threading.set_intra_op_parallelism_threads(
            max(1, (cores or 1) // hvd.local_size())
        )
        tf.config.threading.set_inter_op_parallelism_threads(2)


def _mlflow_run(
    ctx: StepContext,
    run_dir: str,
    settings: dict[str, Any],
    latest: dict | None,
    extra_tags: dict[str, Any],
    run_name: str | None = None,
) -> tuple[str, bool]:
    """Start (or, on a retry of the same Airflow run, continue) the MLflow run. Rank 0 only."""
    import mlflow

    mlflow.set_experiment(experiment_name(ctx.pipeline, ctx.customer))
    marker = lake.join(run_dir, "mlflow_run.json")
    previous = (latest or {}).get("mlflow_run_id") or (
        lake.read_json(marker)["run_id"] if lake.exists(marker) else None
    )
    if previous:
        try:
            mlflow.start_run(run_id=previous)
            mlflow.set_tag("resumed", "true")
            return previous, True
        except Exception as exc:
            log.warning("cannot continue MLflow run %s (%s): starting a new one", previous, exc)
    name = run_name or f"{ctx.customer}/{ctx.run_key}"
    run = mlflow.start_run(run_name=name, tags=run_tags(ctx, extra_tags))
    lake.write_json_atomic(
        marker, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}
    )
    return run.info.run_id, False


def _log_model(net: Any, model: Model, example: Any, *, served: bool = False) -> tuple[str, Any]:
    """Log the fitted object as the platform's model directory (model_store: the framework's fixed
    format, io.json, the column signature, a manifest with digests) into the active run, tag the
    run with its digest: (the digest, with ``served`` the directory loaded back through
    model_store, verified: what the gate and scoring will load, else None)."""
    import tempfile
    from pathlib import Path

    import mlflow

    from model_steps import model_store

    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        directory = Path(tmp) / model_store.MODEL_ARTIFACT
        manifest = model_store.save_model(directory, net, model, example)
        loaded = (
            model_store.load_dir(directory, manifest.digest, "the fitted model", model)
            if served
            else None
        )
        mlflow.log_artifacts(str(directory), artifact_path=model_store.MODEL_ARTIFACT)
    mlflow.set_tag(model_store.DIGEST_TAG, manifest.digest)
    return manifest.digest, loaded


def _compile(net: Any, model: Model, lr: float, hvd: Any) -> Any:
    import tensorflow as tf

    # legacy Keras optimizer: Horovod 0.28's DistributedOptimizer wraps these in TF 2.15
    opt = hvd.DistributedOptimizer(tf.keras.optimizers.legacy.Adam(learning_rate=lr))
    if model.task == "regression":
        net.compile(optimizer=opt, loss="mse", metrics=[tf.keras.metrics.MeanAbsoluteError("mae")])
    else:
        net.compile(
            optimizer=opt, loss="binary_crossentropy", metrics=[tf.keras.metrics.AUC(name="auc")]
        )
    return opt


def _params(loaded: model_loader.LoadedModel, **extra: Any) -> dict[str, Any]:
    def flat(v: Any) -> Any:
        return ",".join(map(str, v)) if isinstance(v, list | tuple) else v

    training = loaded.platform.training.model_dump()
    own = {f"model.{k}": flat(v) for k, v in loaded.settings.model_dump(mode="json").items()}
    return {**training, **own, "model": loaded.model.name, "task": loaded.model.task, **extra}


def run(ctx: StepContext) -> TrainResult | RankResult:
    started = time.monotonic()
    loaded = model_loader.load(ctx)
    selected = None
    if loaded.platform.tuning.enabled:  # train with the best trial's parameters, on all the data
        selected = read_selection(ctx)
        ctx = dataclasses.replace(ctx, config=apply(ctx.config, selected.params))
        loaded = model_loader.load(ctx)
    uri = tracking_uri(ctx)
    bound_mlflow_client()
    # every rank checks: none is left waiting in a collective for a rank that gave up
    wait_for_server(uri)

    return lake.once(
        ctx.layout.train_result, lambda: _train(ctx, loaded, uri, selected, started),
        load=_reused, dump=TrainResult.to_xcom, keep=lambda r: isinstance(r, TrainResult),
    )  # fmt: skip


def _reused(payload: Any) -> TrainResult:
    result = TrainResult.model_validate(payload)
    log.info("this run already trained %s (run %s): returning its result",
             result.registered_model, result.mlflow_run_id)  # fmt: skip
    return result


def _train(
    ctx: StepContext, loaded: model_loader.LoadedModel, uri: str, selected: SelectResult | None,
    started: float,
) -> TrainResult | RankResult:  # fmt: skip
    """Every rank fits; rank 0 logs the model directory and says what it trained."""
    if loaded.model.framework != "keras":  # one process, the model's own fit
        return _train_single(ctx, loaded, selected, started)
    import horovod.tensorflow.keras as hvd

    hvd.init()
    _configure_tf(hvd)
    run_dir = ctx.layout.models
    fitted = _fit(ctx, loaded, run_dir, uri, hvd, FitPlan(tags=tuning_tags(selected)))
    if hvd.rank() != 0:
        return RankResult(rank=hvd.rank())
    result = _log_outputs(ctx, loaded, fitted, run_dir, selected)
    result.seconds = round(time.monotonic() - started, 1)
    log.info(
        "trained %s (run %s, digest %s): holdout %s %.4f (%d ranks, epochs %d..%d, %.1fs)",
        result.registered_model,
        result.mlflow_run_id,
        result.model_digest[:12],
        loaded.model.task_info.default_metric,
        result.metrics[loaded.model.task_info.default_metric],
        result.ranks,
        result.start_epoch + 1,
        result.epochs,
        result.seconds,
    )
    return result


def run_trial(
    ctx: StepContext, trial: dict[str, Any], *, parent_run_id: str, epochs: int, rung: int,
    objective: str, result: str, first_rung: str | None = None,
) -> TrialResult | RankResult:  # fmt: skip
    """One tuning trial (model_steps/steps/tuning.py): the trial's parameters over the settings,
    fit on the training split's "fit" part up to ``epochs``, scored on its "validation" part, an
    MLflow child run of ``parent_run_id``; no model is registered. A retry, or the next rung,
    resumes from the trial's own checkpoints. Another framework than Keras fits once, whole, in
    one process; on a later rung its first rung's result (``first_rung``) stands."""
    started = time.monotonic()
    ctx = dataclasses.replace(ctx, config=apply(ctx.config, trial["params"]))
    loaded = model_loader.load(ctx)
    uri = tracking_uri(ctx)
    bound_mlflow_client()
    wait_for_server(uri)
    if loaded.model.framework != "keras":  # one fit, no epochs: no rung to continue to
        return lake.once(
            result, lambda: _trial_single(ctx, loaded, trial, parent_run_id, objective, started,
                                          rung=rung, first_rung=first_rung),
            load=TrialResult.model_validate, dump=TrialResult.to_xcom,
        )  # fmt: skip
    return lake.once(
        result, lambda: _trial(ctx, loaded, trial, uri, parent_run_id, epochs, rung, objective,
                               started),
        load=TrialResult.model_validate, dump=TrialResult.to_xcom,
        keep=lambda r: isinstance(r, TrialResult),
    )  # fmt: skip


def _trial(
    ctx: StepContext, loaded: model_loader.LoadedModel, trial: dict[str, Any], uri: str,
    parent_run_id: str, epochs: int, rung: int, objective: str, started: float,
) -> TrialResult | RankResult:  # fmt: skip
    """Every rank fits the trial to its rung; rank 0 scores it on the validation part."""
    import horovod.tensorflow.keras as hvd

    hvd.init()
    _configure_tf(hvd)
    name = trial["name"]
    plan = FitPlan(
        "fit", "validation", epochs, loaded.platform.tuning.validation_fraction,
        run_name=f"{ctx.customer}/{ctx.run_key}/{name}",
        tags={"mlflow.parentRunId": parent_run_id, "tuning.role": "trial", "tuning.trial": name},
    )  # fmt: skip
    fitted = _fit(ctx, loaded, ctx.layout.trial_models(name), uri, hvd, plan)
    if hvd.rank() != 0:
        return RankResult(rank=hvd.rank())
    out = TrialResult(
        **_score_trial(loaded, fitted, objective, epochs),
        name=name, index=trial["index"], params=trial["params"], rung=rung, epochs=epochs,
        start_epoch=fitted["start_epoch"], mlflow_run_id=fitted["mlflow_run_id"],
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    log.info("trial %s rung %d (epoch %d): %s %s = %s", name, rung, epochs, out.status,
             objective, out.objective)  # fmt: skip
    return out


def _trial_single(
    ctx: StepContext, loaded: model_loader.LoadedModel, trial: dict[str, Any], parent_run_id: str,
    objective: str, started: float, *, rung: int, first_rung: str | None,
) -> TrialResult:  # fmt: skip
    """A trial of a single-process framework: the model's ``fit`` on the "fit" part (its
    ``FitData.holdout`` is the "validation" part, which the trial is scored on: what early stopping
    may watch), the fitted object scored in memory; nothing is logged as a model. A kept trial's
    next rung has no epochs to add: it is the first rung's result, carried over."""
    if rung and first_rung and lake.exists(first_rung):
        return TrialResult.model_validate({**lake.read_json(first_rung), "rung": rung})
    import mlflow

    from model_steps import model_store
    from model_steps.serving import predictions

    model, name = loaded.model, trial["name"]
    plan = FitPlan("fit", "validation",
                   validation_fraction=loaded.platform.tuning.validation_fraction)  # fmt: skip
    run_dir = ctx.layout.trial_models(name)
    data, _, validation = _fit_data(ctx.lake_path(FEATURES), loaded, run_dir, plan)
    tags = {"mlflow.parentRunId": parent_run_id, "tuning.role": "trial", "tuning.trial": name,
            "framework": model.framework}  # fmt: skip
    run_id, resumed = _mlflow_run(ctx, run_dir, {}, None, tags,
                                  f"{ctx.customer}/{ctx.run_key}/{name}")  # fmt: skip
    if not resumed:
        mlflow.log_params(_params(loaded, framework=model.framework, rows_train=len(data.train)))
    fitted = model.fit(data, model_loader.model_context(ctx, loaded, 0, 1))
    progress = _fit_progress(data)  # in the trial's run, which _trial_outcome ends
    served = model_store.round_trip(fitted, model, "the trial's model")
    epochs = loaded.platform.training.epochs
    labels = validation[model.label_column].to_numpy()
    scored = _trial_outcome(loaded, labels, predictions(served, model, validation), objective,
                            epochs)  # fmt: skip
    out = TrialResult(**scored, name=name, index=trial["index"], params=trial["params"],
                      rung=rung, epochs=epochs, mlflow_run_id=run_id,
                      start_epoch=progress["start_epoch"],
                      seconds=round(time.monotonic() - started, 1))  # fmt: skip
    log.info("trial %s (%s, one fit): %s %s = %s", name, model.framework, out.status, objective,
             out.objective)  # fmt: skip
    return out


def _score_trial(
    loaded: model_loader.LoadedModel, fitted: dict[str, Any], objective: str, epochs: int
) -> dict[str, Any]:
    """Rank 0: the network's predictions on the whole validation split, judged by
    _trial_outcome."""
    model, tr, tuning = loaded.model, loaded.platform.training, loaded.platform.tuning
    val = read_shard(fitted["table_uri"], model, split="validation", rank=0, size=1,
                     holdout_fraction=tr.holdout_fraction, seed=tr.seed,
                     validation_fraction=tuning.validation_fraction)  # fmt: skip
    data = make_dataset(val, model, batch_size=4 * tr.batch_size, shuffle=False, seed=tr.seed)
    preds = fitted["net"].predict(data, verbose=0).ravel()
    return {**_trial_outcome(loaded, val.label, preds, objective, epochs),
            "validation_rows": val.rows}  # fmt: skip


def _trial_outcome(
    loaded: model_loader.LoadedModel, labels: Any, preds: Any, objective: str, epochs: int
) -> dict[str, Any]:
    """The objective from a trial's predictions on the validation part, logged to the trial's
    child run, which ends FINISHED, or FAILED when the trial diverged (non-finite predictions or
    objective)."""
    import mlflow
    import numpy as np

    model = loaded.model
    status, metrics, value = "failed", {}, float("nan")
    if np.all(np.isfinite(preds)):
        metrics = gate.metrics(model.task, labels, preds)
        value = float(metrics[objective])
        status = "ok" if math.isfinite(value) else "failed"
    if metrics:
        mlflow.log_metrics({f"validation_{k}": v for k, v in metrics.items()}, step=epochs)
    if status == "ok":
        mlflow.log_metric("objective", value, step=epochs)
    mlflow.set_tag("tuning.status", status)
    mlflow.end_run(status="FINISHED" if status == "ok" else "FAILED")
    reason = {} if status == "ok" else {"reason": "diverged: non-finite predictions or objective"}
    return {"status": status, "objective": value if status == "ok" else None,
            "objective_metric": objective, "metrics": metrics, "validation_rows": len(labels),
            **reason}  # fmt: skip


def tuning_tags(selected: SelectResult | None) -> dict[str, str]:
    """Run tags linking a tuned training run to its search (MLflow parent run and trial)."""
    if not selected:
        return {}
    return {
        "tuning.trial": selected.trial,
        "tuning.parent_run_id": selected.parent_run_id,
        "tuning.trial_run_id": selected.trial_run_id or "",
    }


def _fit(
    ctx: StepContext,
    loaded: model_loader.LoadedModel,
    run_dir: str,
    uri: str,
    hvd: Any,
    plan: FitPlan = FitPlan(),
) -> dict[str, Any]:
    """Every rank: read its shard, build the network, resume, fit. Returns what rank 0 needs."""
    model, tr = loaded.model, loaded.platform.training
    rank, size = hvd.rank(), hvd.size()
    state, train, val, (mean, variance) = _prepare(ctx, loaded, plan, rank, size)
    if rank == 0:
        import mlflow

        mlflow.set_tracking_uri(uri)
    if model.train_fn is not None:  # the escape hatch: the model fits, the platform does the rest
        return _fit_with_train_fn(ctx, loaded, run_dir, plan, state,
                                  (train, val, rank), (mean, variance))  # fmt: skip

    epochs, bs, scaled_lr = plan.epochs or tr.epochs, tr.batch_size, state["scaled_lr"]
    net, checkpoints, ckpt, latest, start_epoch = _build_and_restore(
        loaded, state["mctx"], (mean, variance), run_dir, hvd, epochs
    )
    # a resumed run reshuffles from where it stopped, not from epoch 0's order
    train_ds = make_dataset(train, model, batch_size=bs, shuffle=True,
                            seed=tr.seed + rank + start_epoch, repeat=True)  # fmt: skip
    val_ds = make_dataset(val, model, batch_size=4 * bs, shuffle=False, seed=tr.seed)
    mlflow_run_id = None
    if rank == 0:
        mlflow_run_id = _start_fit_run(ctx, loaded, run_dir, plan, state, latest, start_epoch)

    epoch_log: list[dict[str, Any]] = []
    callbacks = _callbacks(hvd, tr, scaled_lr, state["steps_per_epoch"], start_epoch, epoch_log,
                           checkpoints, ckpt, mlflow_run_id, bs, epochs)  # fmt: skip
    t_fit = time.monotonic()
    if start_epoch < epochs:
        net.fit(
            train_ds,
            epochs=epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=state["steps_per_epoch"],
            validation_data=val_ds,
            callbacks=callbacks,
            verbose=0,
        )
    return {**state, "net": net, "mlflow_run_id": mlflow_run_id, "epochs": epochs,
            "start_epoch": start_epoch, "epoch_log": epoch_log,
            "fit_seconds": time.monotonic() - t_fit,
            "checkpoint_uri": checkpoints.latest_uri}  # fmt: skip


def _prepare(
    ctx: StepContext, loaded: model_loader.LoadedModel, plan: FitPlan, rank: int, size: int
) -> tuple[dict[str, Any], Any, Any, tuple[Any, Any]]:
    """Every rank: its shards of the fit and score splits, and the whole fit split's statistics
    (allreduced): (state for rank 0's result, fit shard, score shard, (mean, variance))."""
    import horovod.tensorflow as hvd_tf
    import tensorflow as tf

    model, tr = loaded.model, loaded.platform.training
    table_uri = ctx.lake_path(FEATURES)
    t_read = time.monotonic()
    shard_args = {"rank": rank, "size": size, "holdout_fraction": tr.holdout_fraction,
                  "seed": tr.seed, "validation_fraction": plan.validation_fraction}  # fmt: skip
    train = read_shard(table_uri, model, split=plan.fit_split, **shard_args)
    val = read_shard(table_uri, model, split=plan.score_split, **shard_args)
    read_s = time.monotonic() - t_read

    # whole-training-split statistics for the Normalization layer: sums over all ranks' shards
    moments = numeric_moments(train, model.numeric_features)
    moments = hvd_tf.allreduce(tf.constant(moments), op=hvd_tf.Sum).numpy()
    rows_train = int(moments[0])
    smallest = int(hvd_tf.allreduce(tf.constant(train.rows, tf.int64), op=hvd_tf.Min).numpy())
    if smallest == 0:
        raise StepError(
            f"rank {rank}: a training shard of {table_uri} is empty "
            f"({rows_train} training rows for {size} ranks)"
        )
    state = {
        "table_uri": table_uri, "rows_train": rows_train,
        "steps_per_epoch": max(1, math.ceil(smallest / tr.batch_size)),
        "read_seconds": round(read_s, 2), "ranks": size,
        "scaled_lr": tr.learning_rate * size,  # linear scaling with the global batch
        "mctx": model_loader.model_context(ctx, loaded, rank, size), "score_split": val,
    }  # fmt: skip
    return state, train, val, moments_to_stats(moments)


def _fit_with_train_fn(
    ctx: StepContext, loaded: model_loader.LoadedModel, run_dir: str, plan: FitPlan,
    state: dict[str, Any], shards: tuple[Any, Any, int], stats: tuple[Any, Any],
) -> dict[str, Any]:  # fmt: skip
    """The model's own fit (``train_fn``) on the platform's shards, datasets and inputs."""
    model, tr = loaded.model, loaded.platform.training
    size, bs, spe = state["ranks"], tr.batch_size, state["steps_per_epoch"]
    train, val, rank = shards
    train_ds = make_dataset(train, model, batch_size=bs, shuffle=True, seed=tr.seed + rank,
                            repeat=True)  # fmt: skip
    val_ds = make_dataset(val, model, batch_size=4 * bs, shuffle=False, seed=tr.seed)
    data = TrainingData(train, val, train_ds, val_ds, spe, network_inputs(model, *stats))
    mlflow_run_id = None
    t_fit = time.monotonic()
    if rank == 0:
        import mlflow

        tags = {"horovod.size": size, **plan.tags}
        mlflow_run_id, _ = _mlflow_run(ctx, run_dir, {}, None, tags, plan.run_name)
        mlflow.log_params(_params(loaded, horovod_size=size, train_fn="model"))
    net = model.train_fn(data, state["mctx"])
    return {**state, "net": net, "mlflow_run_id": mlflow_run_id,
            "epochs": plan.epochs or tr.epochs, "start_epoch": 0, "epoch_log": [],
            "fit_seconds": time.monotonic() - t_fit, "checkpoint_uri": ""}  # fmt: skip


def _build_and_restore(
    loaded: model_loader.LoadedModel, mctx: Any, stats: tuple[Any, Any], run_dir: str, hvd: Any,
    epochs: int,
) -> tuple[Any, Checkpoints, Any, dict | None, int]:  # fmt: skip
    """Every rank: the compiled network, restored from rank 0's latest checkpoint if any:
    (network, checkpoints, tf checkpoint, latest checkpoint record, epoch to start from)."""
    import horovod.tensorflow as hvd_tf
    import tensorflow as tf

    model, tr = loaded.model, loaded.platform.training
    net = build_model(model, mctx, *stats)
    opt = _compile(net, model, tr.learning_rate * hvd.size(), hvd)
    checkpoints = Checkpoints(run_dir)
    ckpt = tf.train.Checkpoint(model=net, optimizer=opt)
    rank = hvd.rank()
    latest = hvd_tf.broadcast_object(checkpoints.latest() if rank == 0 else None, root_rank=0)
    start_epoch = 0
    if latest:
        net.optimizer._create_all_weights(net.trainable_variables)  # slots to restore into
        checkpoints.restore(ckpt, latest)
        start_epoch = int(latest["epoch"])
        log.info("rank %d: resumed from checkpoint epoch %d of %d", rank, start_epoch, epochs)
    return net, checkpoints, ckpt, latest, start_epoch


def _start_fit_run(
    ctx: StepContext, loaded: model_loader.LoadedModel, run_dir: str, plan: FitPlan,
    state: dict[str, Any], latest: dict | None, start_epoch: int,
) -> str:  # fmt: skip
    """Rank 0: start (or continue) the fit's MLflow run; params on a new one. Returns its id."""
    import mlflow

    model, tr = loaded.model, loaded.platform.training
    size, spe = state["ranks"], state["steps_per_epoch"]
    tags = {"horovod.size": size, "features_uri": state["table_uri"], **plan.tags}
    mlflow_run_id, resumed = _mlflow_run(ctx, run_dir, {}, latest, tags, plan.run_name)
    if not resumed:
        mlflow.log_params(
            _params(
                loaded, horovod_size=size, global_batch_size=tr.batch_size * size,
                scaled_learning_rate=state["scaled_lr"], steps_per_epoch=spe,
                rows_train=state["rows_train"], features_numeric=len(model.numeric_features),
                features_categorical=len(model.categorical_features), optimizer="Adam",
            )
        )  # fmt: skip
    if start_epoch:
        mlflow.log_metric("resumed_at_epoch", start_epoch, step=start_epoch)
    return mlflow_run_id


def _callbacks(
    hvd: Any, tr: Any, scaled_lr: float, steps_per_epoch: int, start_epoch: int,
    epoch_log: list[dict[str, Any]], checkpoints: Checkpoints, ckpt: Any,
    mlflow_run_id: str | None, bs: int, epochs: int,
) -> list[Any]:  # fmt: skip
    import tensorflow as tf

    rank, size = hvd.rank(), hvd.size()

    class EpochEnd(tf.keras.callbacks.Callback):
        """After the metric averaging: time the epoch, log and checkpoint (rank 0)."""

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seconds = time.monotonic() - self.t0
            samples = steps_per_epoch * bs * size
            row = {k: float(v) for k, v in (logs or {}).items()}
            row |= {
                "epoch_seconds": seconds,
                "samples_per_second": samples / seconds,
                "learning_rate": float(tf.keras.backend.get_value(self.model.optimizer.lr)),
            }
            epoch_log.append({"epoch": epoch + 1, **row})
            if rank != 0:
                return
            import mlflow

            mlflow.log_metrics(row, step=epoch + 1)
            checkpoints.save(ckpt, epoch + 1, {"mlflow_run_id": mlflow_run_id, "metrics": row})
            log.info(
                "epoch %d/%d: %s",
                epoch + 1,
                epochs,
                ", ".join(f"{k}={v:.4g}" for k, v in sorted(row.items())),
            )

    callbacks: list[Any] = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),  # rank 0's initial state everywhere
        hvd.callbacks.MetricAverageCallback(),  # epoch metrics averaged over ranks
    ]
    if tr.warmup_epochs > 0 and start_epoch < tr.warmup_epochs:
        callbacks.append(
            hvd.callbacks.LearningRateWarmupCallback(
                initial_lr=scaled_lr,
                warmup_epochs=tr.warmup_epochs,
                steps_per_epoch=steps_per_epoch,
            )
        )
    return [*callbacks, EpochEnd()]


def _log_outputs(
    ctx: StepContext,
    loaded: model_loader.LoadedModel,
    fitted: dict[str, Any],
    run_dir: str,
    selected: SelectResult | None = None,
) -> TrainResult:
    """Rank 0: exact metrics on the whole holdout, profile, data inputs, the model directory and
    its digest (run tag). Nothing is registered: the evaluate gate registers what it verified."""
    import mlflow

    model, table_uri = loaded.model, fitted["table_uri"]
    metrics = _holdout_metrics(loaded, fitted)
    df, profile_uri = _log_data(ctx, loaded, table_uri)
    example = df[list(model.input_columns)].head(5).reset_index(drop=True)
    digest, _ = _log_model(fitted["net"], model, example)
    mlflow.end_run()
    return _result(ctx, loaded, fitted, metrics, {
        "registered_model": registered_model_name(ctx.pipeline, ctx.customer),
        "model_digest": digest, "run_model_uri": f"runs:/{fitted['mlflow_run_id']}/model",
        "run_dir": run_dir, "profile_uri": profile_uri,
        "tuning": {"trial": selected.trial, "params": selected.params} if selected else None,
    })  # fmt: skip


def _holdout_metrics(loaded: model_loader.LoadedModel, fitted: dict[str, Any]) -> dict[str, float]:
    """The fitted network's metrics on the whole holdout split, logged to the run."""
    import mlflow

    model, tr = loaded.model, loaded.platform.training
    holdout = read_shard(fitted["table_uri"], model, split="holdout", rank=0, size=1,
                         holdout_fraction=tr.holdout_fraction, seed=tr.seed)  # fmt: skip
    preds = (
        fitted["net"]
        .predict(
            make_dataset(holdout, model, batch_size=4 * tr.batch_size, shuffle=False, seed=tr.seed),
            verbose=0,
        )
        .ravel()
    )
    metrics = gate.metrics(model.task, holdout.label, preds)
    mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()}, step=tr.epochs)
    return metrics


def _log_data(
    ctx: StepContext, loaded: model_loader.LoadedModel, table_uri: str
) -> tuple[Any, str]:
    """The feature profile (lake + run) and the training/holdout datasets as run inputs:
    (the feature table, the profile's lake URI)."""
    import mlflow

    from model_steps.profile import build_profile, read_table

    model, tr = loaded.model, loaded.platform.training
    df = read_table(table_uri)
    profile = build_profile(df, model, source=table_uri)
    profile_uri = ctx.layout.training_profile
    lake.write_json_atomic(profile_uri, profile)
    mlflow.log_dict(profile, "feature_profile.json")

    hold = holdout_mask(df[model.key].to_numpy(), tr.holdout_fraction, tr.seed)
    name = f"{ctx.pipeline}-{ctx.customer}-{ctx.data_date.isoformat()}"
    for context, part in (("training", df[~hold]), ("holdout", df[hold])):
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": file or s3
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                part.reset_index(drop=True),
                source=table_uri,
                targets=model.label_column,
                name=f"{name}-{context}",
            )
        mlflow.log_input(dataset, context=context)
    return df, profile_uri


def _result(
    ctx: StepContext, loaded: model_loader.LoadedModel, fitted: dict[str, Any],
    metrics: dict[str, float], model_fields: dict[str, Any],
) -> TrainResult:  # fmt: skip
    """The step's result: what was trained, how, and where its outputs are."""
    model, tr = loaded.model, loaded.platform.training
    ran = list(fitted["epoch_log"])
    bs, size = tr.batch_size, fitted["ranks"]
    return TrainResult(
        status="trained",
        model=model.name,
        task=model.task,
        mlflow_run_id=fitted["mlflow_run_id"],
        experiment=experiment_name(ctx.pipeline, ctx.customer),
        metrics=metrics,
        epochs=tr.epochs,
        start_epoch=fitted["start_epoch"],
        resumed=bool(fitted["start_epoch"]),
        epochs_run=len(ran),
        ranks=size,
        rows_train=fitted["rows_train"],
        steps_per_epoch=fitted["steps_per_epoch"],
        global_batch_size=bs * size,
        epoch_seconds=[round(e["epoch_seconds"], 3) for e in ran],
        samples_per_second=[round(e["samples_per_second"], 1) for e in ran],
        read_seconds=fitted["read_seconds"],
        fit_seconds=round(fitted["fit_seconds"], 2),
        checkpoint_uri=fitted["checkpoint_uri"],
        features_uri=fitted["table_uri"],
        **model_fields,
    )


def _train_single(
    ctx: StepContext, loaded: model_loader.LoadedModel, selected: SelectResult | None,
    started: float,
) -> TrainResult:  # fmt: skip
    """Another framework than Keras: one process reads the whole training split and the holdout,
    the model's ``fit`` returns the fitted object; the platform logs it in the framework's format
    and measures the holdout through the very directory it logged (model_store's Predictor)."""
    import mlflow

    from model_steps.serving import predictions

    model = loaded.model
    run_dir, table_uri = ctx.layout.models, ctx.lake_path(FEATURES)
    t_read = time.monotonic()
    data, df, holdout = _fit_data(table_uri, loaded, run_dir)
    read_s = time.monotonic() - t_read
    tags = {"framework": model.framework, "features_uri": table_uri, **tuning_tags(selected)}
    run_id, resumed = _mlflow_run(ctx, run_dir, {}, None, tags)
    if not resumed:  # a retry continues the killed attempt's run, whose params are logged
        mlflow.log_params(_params(loaded, framework=model.framework, rows_train=len(data.train)))
    t_fit = time.monotonic()
    fitted = model.fit(data, model_loader.model_context(ctx, loaded, 0, 1))
    fit_s = time.monotonic() - t_fit
    progress = _fit_progress(data)
    _, profile_uri = _log_data(ctx, loaded, table_uri)
    example = df[list(model.input_columns)].head(5).reset_index(drop=True)
    digest, served = _log_model(fitted, model, example, served=True)
    preds = predictions(served, model, holdout)
    metrics = gate.metrics(model.task, holdout[model.label_column].to_numpy(), preds)
    mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()})
    mlflow.end_run()
    state = {"mlflow_run_id": run_id, "ranks": 1, "rows_train": len(data.train),
             "steps_per_epoch": 1, "read_seconds": round(read_s, 2), "fit_seconds": fit_s,
             "table_uri": table_uri, **progress}  # fmt: skip
    result = _result(ctx, loaded, state, metrics, {
        "registered_model": registered_model_name(ctx.pipeline, ctx.customer),
        "model_digest": digest, "run_model_uri": f"runs:/{run_id}/model", "run_dir": run_dir,
        "profile_uri": profile_uri,
        "tuning": {"trial": selected.trial, "params": selected.params} if selected else None,
    })  # fmt: skip
    result.seconds = round(time.monotonic() - started, 1)
    log.info("trained %s with %s (run %s, digest %s): holdout %s", result.registered_model,
             model.framework, run_id, digest[:12], metrics)  # fmt: skip
    return result


def _fit_progress(data: FitData) -> dict[str, Any]:
    """What the fit's checkpoint store saw (a fit that saves none: nothing): the epoch it resumed
    from (also an MLflow metric, as the Keras loop logs it), each epoch it saved with its time,
    and the store's commit record."""
    import mlflow

    store = data.checkpoints
    if not isinstance(store, FitCheckpoints) or not (store.epochs_saved or store.resumed_epoch):
        return {"start_epoch": 0, "epoch_log": [], "checkpoint_uri": ""}
    if store.resumed_epoch:
        mlflow.log_metric("resumed_at_epoch", store.resumed_epoch, step=store.resumed_epoch)
    rows = len(data.train)
    epoch_log = [{"epoch": epoch, "epoch_seconds": s, "samples_per_second": rows / max(s, 1e-9)}
                 for epoch, s in store.epochs_saved]  # fmt: skip
    return {"start_epoch": store.resumed_epoch, "epoch_log": epoch_log,
            "checkpoint_uri": store.latest_uri}  # fmt: skip


def _fit_data(
    table_uri: str, loaded: model_loader.LoadedModel, run_dir: str, plan: FitPlan = FitPlan()
) -> tuple[FitData, Any, Any]:
    """The plan's fit and score splits (the training split and the holdout; a trial's "fit" and
    "validation" parts), inputs as the served model takes them (serving.tabular_frame) plus the
    label, and the checkpoint store in ``run_dir``: (FitData, the feature table, the score split's
    rows of it)."""
    from model_steps.profile import read_table
    from model_steps.serving import io_spec, tabular_frame

    model, tr = loaded.model, loaded.platform.training
    df = read_table(table_uri)
    keys = df[model.key].to_numpy()
    fit_rows, score_rows = (
        split_mask(keys, split, tr.holdout_fraction, tr.seed, plan.validation_fraction)
        for split in (plan.fit_split, plan.score_split)
    )

    def part(rows: Any) -> Any:
        frame = tabular_frame(df[rows].reset_index(drop=True), io_spec(model))
        frame[model.label_column] = df[rows][model.label_column].to_numpy()
        return frame

    store = FitCheckpoints(run_dir, tr.checkpoint_seconds)
    data = FitData.of(model, part(fit_rows), part(score_rows), tr.seed, store)
    if data.train.empty:
        raise StepError(f"{table_uri}: the {plan.fit_split} split is empty")
    return data, df, df[score_rows]
