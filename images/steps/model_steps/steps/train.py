"""Train step (TensorFlow + Horovod): the run's feature table -> a Keras propensity model, tracked
and registered in MLflow, checkpointed every epoch so a killed run resumes.

Every rank runs this body (``horovodrun -np N … python -m model_steps train …``; one process without
horovodrun is a world of one). Rank r reads only its shard of the table; gradients are averaged by
Horovod's DistributedOptimizer; rank 0 alone talks to MLflow, writes checkpoints and the result.

Lake outputs of rank 0 (``<run dir>`` = ``<lake>/models/<pipeline>/customer=<tenant>/run=<run key>``)::

    <run dir>/checkpoints/epoch=NNNN/…          the last completed epoch (tf.train.Checkpoint)
    <run dir>/checkpoints/_LATEST.json          commit point of the checkpoint, with the MLflow run id
    <run dir>/mlflow_run.json                   the MLflow run this Airflow run trains into
    <run dir>/feature_profile.json              profile of the training table (drift reference;
                                                the promotion copies it to .../champion/)
    <run dir>/train_result.json                 the step's result, written last: a retry after
                                                success returns it instead of training again
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from typing import Any

from model_steps import lake
from model_steps.contract import StepContext, StepError
from model_steps.tracking import (
    bound_mlflow_client,
    experiment_name,
    registered_model_name,
    run_tags,
    tracking_uri,
    wait_for_server,
)
from model_steps.training import (
    CATEGORICAL,
    INPUT_COLUMNS,
    NUMERIC,
    Checkpoints,
    build_model,
    holdout_metrics,
    make_dataset,
    moments_to_stats,
    numeric_moments,
    read_shard,
    training_settings,
)

log = logging.getLogger(__name__)

# what a pyfunc consumer needs (pinned like images/steps/pyproject.toml's train extra); listing them
# spares MLflow a subprocess that imports the model to infer them
PIP_REQUIREMENTS = [
    "tensorflow-cpu==2.15.1",
    "mlflow==3.17.2",
    "numpy==1.26.4",
    "pandas==2.3.3",
    "protobuf==4.25.9",
]


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
) -> tuple[str, bool]:
    """Start (or, on a retry of the same Airflow run, continue) the MLflow run. Rank 0 only."""
    import mlflow

    mlflow.set_experiment(experiment_name(ctx.pipeline))
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
    run = mlflow.start_run(run_name=f"{ctx.customer}/{ctx.run_key}", tags=run_tags(ctx, extra_tags))
    lake.write_json_atomic(
        marker, {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id}
    )
    return run.info.run_id, False


def _log_model(model: Any, example: Any, reg_name: str) -> Any:
    """Log the pyfunc form of the model (signature + input example) and register a new version."""
    import tempfile

    import mlflow
    import tensorflow as tf
    from mlflow.models import infer_signature

    from model_steps.serving import KERAS_ARTIFACT, PropensityModel, to_inputs

    serving = tf.keras.models.clone_model(model)  # without the Horovod-wrapped optimizer
    serving.set_weights(model.get_weights())
    with tempfile.TemporaryDirectory(prefix="keras-") as tmp:
        path = os.path.join(tmp, "propensity.keras")
        serving.save(path)
        preds = serving.predict(to_inputs(example), verbose=0).ravel()
        with warnings.catch_warnings():  # the integer-column hint: feature columns are never null
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(example, {"propensity": preds.astype("float64")})
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=PropensityModel(),
            artifacts={KERAS_ARTIFACT: path},
            signature=signature,
            input_example=example,
            registered_model_name=reg_name,
            pip_requirements=PIP_REQUIREMENTS,
            # the wrapper's code travels with the model: loadable where model_steps is not installed
            code_paths=[os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],
        )


def run(ctx: StepContext) -> dict[str, Any]:
    started = time.monotonic()
    settings = training_settings(ctx.config)
    uri = tracking_uri(ctx)
    bound_mlflow_client()
    # every rank checks: none is left waiting in a collective for a rank that gave up
    wait_for_server(uri)

    table_uri = ctx.lake_path("features")
    run_dir = ctx.lake_path("models")
    done_uri = lake.join(run_dir, "train_result.json")
    if lake.exists(done_uri):
        result = lake.read_json(done_uri)
        log.info(
            "this run already trained and registered %s v%s: returning its result",
            result.get("registered_model"),
            result.get("model_version"),
        )
        return result

    import horovod.tensorflow as hvd_tf
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    _configure_tf(hvd)
    seed = int(settings["seed"])
    bs = int(settings["batch_size"])
    epochs = int(settings["epochs"])

    t_read = time.monotonic()
    shard_args = {
        "rank": rank,
        "size": size,
        "holdout_fraction": float(settings["holdout_fraction"]),
        "seed": seed,
    }
    train = read_shard(table_uri, split="train", **shard_args)
    val = read_shard(table_uri, split="holdout", **shard_args)
    read_s = time.monotonic() - t_read

    # whole-training-split statistics for the Normalization layer: sums over all ranks' shards
    moments = hvd_tf.allreduce(tf.constant(numeric_moments(train)), op=hvd_tf.Sum).numpy()
    mean, variance = moments_to_stats(moments)
    rows_train = int(moments[0])
    smallest = int(hvd_tf.allreduce(tf.constant(train.rows, tf.int64), op=hvd_tf.Min).numpy())
    if smallest == 0:
        raise StepError(
            f"rank {rank}: a training shard of {table_uri} is empty "
            f"({rows_train} training rows for {size} ranks)"
        )
    steps_per_epoch = max(1, math.ceil(smallest / bs))

    model = build_model(
        mean,
        variance,
        hidden_units=settings["hidden_units"],
        dropout=float(settings["dropout"]),
        seed=seed,
    )
    scaled_lr = float(settings["learning_rate"]) * size  # linear scaling with the global batch
    # legacy Keras optimizer: Horovod 0.28's DistributedOptimizer wraps these in TF 2.15
    opt = hvd.DistributedOptimizer(tf.keras.optimizers.legacy.Adam(learning_rate=scaled_lr))
    model.compile(
        optimizer=opt, loss="binary_crossentropy", metrics=[tf.keras.metrics.AUC(name="auc")]
    )

    checkpoints = Checkpoints(run_dir)
    ckpt = tf.train.Checkpoint(model=model, optimizer=opt)
    latest = hvd_tf.broadcast_object(checkpoints.latest() if rank == 0 else None, root_rank=0)
    start_epoch = 0
    if latest:
        model.optimizer._create_all_weights(
            model.trainable_variables
        )  # slots exist to restore into
        checkpoints.restore(ckpt, latest)
        start_epoch = int(latest["epoch"])
        log.info("rank %d: resumed from checkpoint epoch %d of %d", rank, start_epoch, epochs)

    train_ds = make_dataset(
        train, batch_size=bs, shuffle=True, seed=seed + rank + start_epoch, repeat=True
    )
    val_ds = make_dataset(val, batch_size=4 * bs, shuffle=False, seed=seed)

    mlflow_run_id, resumed = None, False
    epoch_log: list[dict[str, Any]] = []
    if rank == 0:
        import mlflow

        mlflow.set_tracking_uri(uri)
        mlflow_run_id, resumed = _mlflow_run(
            ctx, run_dir, settings, latest, {"horovod.size": size, "features_uri": table_uri}
        )
        if not resumed:
            mlflow.log_params(
                {
                    **{
                        k: (",".join(map(str, v)) if isinstance(v, list) else v)
                        for k, v in settings.items()
                    },
                    "horovod_size": size,
                    "global_batch_size": bs * size,
                    "scaled_learning_rate": scaled_lr,
                    "steps_per_epoch": steps_per_epoch,
                    "rows_train": rows_train,
                    "features_numeric": len(NUMERIC),
                    "features_categorical": len(CATEGORICAL),
                    "optimizer": "Adam",
                    "loss": "binary_crossentropy",
                }
            )
        if start_epoch:
            mlflow.log_metric("resumed_at_epoch", start_epoch, step=start_epoch)

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
    warmup = int(settings["warmup_epochs"])
    if warmup > 0 and start_epoch < warmup:
        callbacks.append(
            hvd.callbacks.LearningRateWarmupCallback(
                initial_lr=scaled_lr, warmup_epochs=warmup, steps_per_epoch=steps_per_epoch
            )
        )
    callbacks.append(EpochEnd())

    t_fit = time.monotonic()
    if start_epoch < epochs:
        model.fit(
            train_ds,
            epochs=epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_data=val_ds,
            callbacks=callbacks,
            verbose=0,
        )
    fit_s = time.monotonic() - t_fit
    if rank != 0:
        return {"rank": rank}

    # ---- rank 0: exact metrics on the whole holdout, profile, data inputs, model, registry
    import mlflow

    from model_steps.profile import build_profile, read_table

    holdout = read_shard(
        table_uri,
        split="holdout",
        rank=0,
        size=1,
        holdout_fraction=float(settings["holdout_fraction"]),
        seed=seed,
    )
    preds = model.predict(
        make_dataset(holdout, batch_size=4 * bs, shuffle=False, seed=seed), verbose=0
    ).ravel()
    metrics = holdout_metrics(holdout.label, preds)
    mlflow.log_metrics({f"holdout_{k}": v for k, v in metrics.items()}, step=epochs)

    df = read_table(table_uri)
    profile = build_profile(df, source=table_uri)
    profile_uri = lake.join(run_dir, "feature_profile.json")
    lake.write_json_atomic(profile_uri, profile)
    mlflow.log_dict(profile, "feature_profile.json")

    from model_steps.training import holdout_mask

    hold = holdout_mask(df["diner_id"].to_numpy(), float(settings["holdout_fraction"]), seed)
    name = f"{ctx.pipeline}-{ctx.customer}-{ctx.data_date.isoformat()}"
    for context, part in (("training", df[~hold]), ("holdout", df[hold])):
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": file or s3
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                part.reset_index(drop=True),
                source=table_uri,
                targets="label",
                name=f"{name}-{context}",
            )
        mlflow.log_input(dataset, context=context)

    info = _log_model(
        model,
        df[list(INPUT_COLUMNS)].head(5).reset_index(drop=True),
        registered_model_name(ctx.pipeline, ctx.customer),
    )
    reg_name = registered_model_name(ctx.pipeline, ctx.customer)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for k, v in {
        "run_key": ctx.run_key,
        "data_date": ctx.data_date.isoformat(),
        "roc_auc": metrics["roc_auc"],
        "features_uri": table_uri,
    }.items():
        client.set_model_version_tag(reg_name, version, k, str(v))
    client.set_registered_model_tag(reg_name, "pipeline", ctx.pipeline)
    client.set_registered_model_tag(reg_name, "customer", ctx.customer)
    mlflow.end_run()

    seconds = round(time.monotonic() - started, 1)
    ran = list(epoch_log)
    result = {
        "status": "trained",
        "mlflow_run_id": mlflow_run_id,
        "experiment": experiment_name(ctx.pipeline),
        "registered_model": reg_name,
        "model_version": version,
        "model_uri": f"models:/{reg_name}/{version}",
        "run_model_uri": info.model_uri,
        "metrics": metrics,
        "epochs": epochs,
        "start_epoch": start_epoch,
        "resumed": bool(start_epoch),
        "epochs_run": len(ran),
        "ranks": size,
        "rows_train": rows_train,
        "steps_per_epoch": steps_per_epoch,
        "global_batch_size": bs * size,
        "epoch_seconds": [round(e["epoch_seconds"], 3) for e in ran],
        "samples_per_second": [round(e["samples_per_second"], 1) for e in ran],
        "read_seconds": round(read_s, 2),
        "fit_seconds": round(fit_s, 2),
        "run_dir": run_dir,
        "checkpoint_uri": checkpoints.latest_uri,
        "profile_uri": profile_uri,
        "features_uri": table_uri,
        "seconds": seconds,
    }
    lake.write_json_atomic(done_uri, result)
    log.info(
        "trained %s v%s: holdout AUC %.4f (%d ranks, epochs %d..%d, %.1fs)",
        reg_name,
        version,
        metrics["roc_auc"],
        size,
        start_epoch + 1,
        epochs,
        seconds,
    )
    return result
