"""Training checkpoints in the lake: their layout (:class:`Checkpoints`: the Keras loop's
``tf.train.Checkpoint`` and a single-process fit's files) and the store the platform hands a
non-Keras model's ``fit`` as ``FitData.checkpoints`` (:class:`FitCheckpoints`).

A fit saves after each epoch (or boosting round, or whatever unit it counts) and, when it starts,
asks for the latest checkpoint: a retried train task (a restarted worker, an evicted pod) then
resumes where the killed attempt stopped instead of starting again. The store lives in the run's
lake directory, in the layout Keras's checkpoints use (``_LATEST.json`` is the commit point, one
epoch kept), so a retry of the same Airflow run finds it and another run never does.

A checkpoint is data, never code: numeric arrays in an ``.npz`` read with ``allow_pickle=False``
(numpy refuses an object array instead of unpickling it) and a JSON document. The train pod that
writes it is the only one that reads it, but the format is the platform's rule for anything read
back from storage.

PyTorch gets two helpers over the store (``save_torch``/``restore_torch``): the module's and the
optimizer's state, the torch RNG (so a resumed fit shuffles as the uninterrupted one would have)
and any state dicts the fit keeps, such as its best epoch's weights. XGBoost gets a training
callback and its resume (``xgboost_checkpoints``/``resume_xgboost``): the booster's JSON model and
its early-stopping state, continued with ``xgboost.train(xgb_model=…)``. LightGBM gets a callback
that stops early and checkpoints (``LightGBMCheckpoints``): the booster's text model and the
stopping state, continued with ``lightgbm.train(init_model=…)``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model_steps import lake
from model_steps.model_api import Checkpoint

log = logging.getLogger(__name__)
T = TypeVar("T")

TENSORS, STATE = "tensors.npz", "state.json"
FORMAT = "npz+json"
TORCH = "_torch"  # the state key save_torch keeps the optimizer's groups and scalars under
XGBOOST = "_xgboost"  # the state key of the early-stopping state xgboost_checkpoints keeps
LIGHTGBM = "_lightgbm"  # the state key of LightGBMCheckpoints' early-stopping state


class Checkpoints:
    """Per-epoch training checkpoints of one run in the lake::

        <run dir>/checkpoints/epoch=0003/…           the files of the last completed epoch
        <run dir>/checkpoints/_LATEST.json          {"epoch": 3, "dir": "epoch=0003", "files": …}

    Keras writes a ``tf.train.Checkpoint`` (model + optimizer, ``save``/``restore``); a
    single-process fit writes safe files (:class:`FitCheckpoints`, ``save_files``/
    ``read_files``). ``_LATEST.json`` is written last (the commit point): a run killed while
    uploading leaves the previous checkpoint in force. Older epoch folders are removed after each
    commit (keep 1).
    """

    def __init__(self, run_dir_uri: str) -> None:
        self.uri = lake.join(run_dir_uri, "checkpoints")
        self.latest_uri = lake.join(self.uri, "_LATEST.json")

    def latest(self) -> dict[str, Any] | None:
        return lake.read_json(self.latest_uri) if lake.exists(self.latest_uri) else None

    def save(self, ckpt: Any, epoch: int, extra: dict[str, Any]) -> str:
        """A ``tf.train.Checkpoint``'s files for ``epoch``; its prefix goes in the record."""
        prefix = "ckpt"
        return self.save_files(lambda tmp: ckpt.write(os.path.join(tmp, prefix)), epoch,
                               {"prefix": prefix, **extra})  # fmt: skip

    def save_files(self, write: Callable[[str], Any], epoch: int, extra: dict[str, Any]) -> str:
        """``write`` fills a local folder; its files become ``epoch``'s, then the record commits."""
        name = f"epoch={epoch:04d}"
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            write(tmp)
            files = sorted(os.listdir(tmp))
            lake.put_tree(tmp, lake.join(self.uri, name))
        lake.write_json_atomic(self.latest_uri,
                               {"epoch": epoch, "dir": name, "files": files, **extra})  # fmt: skip
        for d in lake.list_dirs(self.uri):
            if d.startswith("epoch=") and d != name:
                lake.remove_tree(lake.join(self.uri, d))
        return lake.join(self.uri, name)

    def restore(self, ckpt: Any, latest: dict[str, Any]) -> None:
        prefix = latest["prefix"]
        self.read_files(latest, lambda tmp: ckpt.read(os.path.join(tmp, prefix)).expect_partial())

    def read_files(self, latest: dict[str, Any], read: Callable[[str], T]) -> T:
        """The record's files fetched into a local folder, which ``read`` reads."""
        fs, _ = lake.filesystem(self.uri)
        with tempfile.TemporaryDirectory(prefix="ckpt-") as tmp:
            for f in latest["files"]:
                src = lake.filesystem(lake.join(self.uri, latest["dir"], f))[1]
                fs.get(src, os.path.join(tmp, f))
            return read(tmp)


class FitCheckpoints:
    """One fit's checkpoints under ``run_dir`` (a retry continues the MLflow run through the run
    directory's own marker, model_steps.steps.train). After the fit the platform reads
    ``resumed_epoch`` and ``epochs_saved`` for the step's result."""

    def __init__(self, run_dir: str, min_seconds: float = 0) -> None:
        self._store = Checkpoints(run_dir)
        self.latest_uri = self._store.latest_uri
        self.min_seconds = min_seconds  # settings training.checkpoint_seconds
        self.resumed_epoch = 0
        self.epochs_saved: list[tuple[int, float]] = []  # (epoch, seconds since the last save)
        self._clock = time.monotonic()

    def due(self) -> bool:
        """Whether a save now would be committed: ``min_seconds`` have passed since the last one
        (or the fit's start). A fit whose state is costly to gather asks first."""
        return time.monotonic() - self._clock >= self.min_seconds

    def latest(self) -> Checkpoint | None:
        """The last committed checkpoint of this run, or None on a first attempt."""
        record = self._store.latest()
        if not record:
            return None
        if record.get("format") != FORMAT:
            raise ValueError(f"{self.latest_uri}: not a single-process fit's checkpoint "
                             f"(format {record.get('format')!r}, expected {FORMAT!r})")  # fmt: skip
        checkpoint = self._store.read_files(record, lambda tmp: _read(tmp, int(record["epoch"])))
        self.resumed_epoch = checkpoint.epoch
        self._clock = time.monotonic()
        log.info("resuming the fit from its checkpoint after epoch %d (%s)", checkpoint.epoch,
                 self.latest_uri)  # fmt: skip
        return checkpoint

    def save(
        self,
        epoch: int,
        tensors: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None:
        """Commit ``epoch`` (≥ 1: the number of units done) with numeric ``tensors`` and a JSON
        ``state``, unless the last commit is younger than ``min_seconds`` (then nothing is
        written: a long fit checkpoints every few seconds, not every round); a value of another
        kind is refused here, naming its key, before anything is written."""
        if not isinstance(epoch, int) or epoch < 1:
            raise ValueError(
                f"checkpoint epoch must be an int >= 1 (units completed), got {epoch!r}"
            )
        arrays = {name: _numeric(name, value) for name, value in (tensors or {}).items()}
        try:
            document = json.dumps(dict(state or {}), sort_keys=True, allow_nan=True)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint state must be JSON: {exc}") from exc
        if not self.due():
            return

        def write(tmp: str) -> None:
            np.savez(os.path.join(tmp, TENSORS), **arrays)
            with open(os.path.join(tmp, STATE), "w") as f:
                f.write(document)

        self._store.save_files(write, epoch, {"format": FORMAT})
        now = time.monotonic()
        self.epochs_saved.append((epoch, now - self._clock))
        self._clock = now


def _numeric(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biufc":
        raise ValueError(f"checkpoint tensor {name!r} is {array.dtype}: only numeric arrays "
                         "are stored (no objects: a checkpoint is data)")  # fmt: skip
    return array


def _read(folder: str, epoch: int) -> Checkpoint:
    with np.load(os.path.join(folder, TENSORS), allow_pickle=False) as npz:
        tensors = {name: npz[name] for name in npz.files}
    with open(os.path.join(folder, STATE)) as f:
        state = json.load(f)
    return Checkpoint(epoch, tensors, state)


# ---------------------------------------------------------------- PyTorch


def save_torch(
    store: FitCheckpoints, epoch: int, *, module: Any, optimizer: Any,
    kept: Mapping[str, Mapping[str, Any]] | None = None, state: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    """Checkpoint a PyTorch fit after ``epoch``: the module, the optimizer (its per-parameter
    tensors, scalars and groups), the torch RNG, the fit's ``kept`` state dicts (name -> state
    dict: the best epoch's weights) and its JSON ``state``; nothing when the store is not due."""
    import torch

    if not store.due():
        return

    tensors = _prefixed("module", module.state_dict())
    scalars: dict[str, dict[str, Any]] = {}
    opt = optimizer.state_dict()
    for index, slots in opt["state"].items():
        for slot, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optimizer/{index}/{slot}"] = value
            else:
                scalars.setdefault(str(index), {})[slot] = value
    for name, state_dict in (kept or {}).items():
        tensors |= _prefixed(f"kept/{name}", state_dict)
    tensors["rng/torch"] = torch.get_rng_state()
    platform = {"param_groups": opt["param_groups"], "scalars": scalars, "kept": sorted(kept or {})}
    arrays = {k: v.detach().cpu().numpy() for k, v in tensors.items()}
    store.save(epoch, arrays, {**(state or {}), TORCH: platform})


def restore_torch(checkpoint: Checkpoint, *, module: Any, optimizer: Any) -> dict[str, dict]:
    """Load what ``save_torch`` saved into ``module`` (strictly: the same keys and shapes) and
    ``optimizer`` and set the torch RNG; returns the kept state dicts by name."""
    import torch

    platform = checkpoint.state[TORCH]
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in checkpoint.tensors.items()}
    module.load_state_dict(_unprefixed("module", tensors), strict=True)
    slots: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, slot = key.split("/", 2)
            slots.setdefault(int(index), {})[slot] = value
    for index, values in platform["scalars"].items():
        slots.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": slots, "param_groups": platform["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    return {name: _unprefixed(f"kept/{name}", tensors) for name in platform["kept"]}


def _prefixed(prefix: str, state_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in state_dict.items()}


def _unprefixed(prefix: str, tensors: Mapping[str, Any]) -> dict[str, Any]:
    start = len(prefix) + 1
    return {k[start:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}


# ---------------------------------------------------------------- XGBoost


def xgboost_checkpoints(store: FitCheckpoints, early_stopping: Any = None) -> Any:
    """An XGBoost ``TrainingCallback`` that commits, after a boosting round when the store is due,
    the booster (its JSON model as bytes) and the state of the fit's ``EarlyStopping`` callback
    (its score history, best scores and rounds without improvement), so that a resumed fit stops
    where the uninterrupted one would. List it after the ``EarlyStopping`` callback."""
    import xgboost as xgb

    class _Checkpoint(xgb.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if store.due():
                raw = np.frombuffer(bytes(model.save_raw("json")), dtype=np.uint8)
                store.save(model.num_boosted_rounds(), {"booster": raw},
                           {XGBOOST: _stopping_state(early_stopping)})  # fmt: skip
            return False

    return _Checkpoint()


def resume_xgboost(store: FitCheckpoints, early_stopping: Any = None) -> tuple[Any, int]:
    """What ``xgboost_checkpoints`` committed last: (the booster to continue with
    ``xgboost.train(xgb_model=…)``, the rounds it holds), its early-stopping state set back into
    ``early_stopping``; (None, 0) on a first attempt. The booster file passes the registry's own
    check of XGBoost's JSON model (model_store.check_xgboost_json) before XGBoost reads it."""
    import xgboost as xgb

    from model_steps.model_store import check_xgboost_json

    last = store.latest()
    if last is None:
        return None, 0
    booster = xgb.Booster()
    _load_checked(last, "booster.json", check_xgboost_json, lambda path: booster.load_model(path))
    state = last.state.get(XGBOOST)
    if early_stopping is not None and state:
        early_stopping.stopping_history = state["stopping_history"]
        early_stopping.best_scores = state["best_scores"]
        early_stopping.current_rounds = state["current_rounds"]
        early_stopping.maximize = state["maximize"]
    return booster, last.epoch


def _load_checked(
    checkpoint: Checkpoint, name: str, check: Callable[[Path], Any], load: Callable[[Path], T]
) -> T:
    """A checkpoint's booster bytes as a file ``name`` that passes the registry's ``check`` of its
    framework's format before the framework's ``load`` parses it."""
    with tempfile.TemporaryDirectory(prefix="booster-ckpt-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(checkpoint.tensors["booster"].tobytes())
        check(path)
        return load(path)


def _stopping_state(early_stopping: Any) -> dict[str, Any] | None:
    if early_stopping is None:
        return None
    return {"stopping_history": early_stopping.stopping_history,
            "best_scores": early_stopping.best_scores,
            "current_rounds": early_stopping.current_rounds,
            "maximize": early_stopping.maximize}  # fmt: skip


# ---------------------------------------------------------------- LightGBM


class LightGBMCheckpoints:
    """A LightGBM callback (``callbacks=[…]``) for a fit that resumes: early stopping on the
    validation sets' metrics as ``lightgbm.early_stopping(stopping_rounds)`` does it (stop when a
    metric has not improved for that many rounds, keep its best iteration; 0: none) and, when the
    store is due, a checkpoint of the booster's text model and that stopping state.
    :meth:`resume` gives back the booster to continue with ``lightgbm.train(init_model=…)``.
    LightGBM's own early-stopping callback resets its state when a training starts, so a fit that
    resumes uses this one instead."""

    order = 30  # LightGBM runs callbacks by order; its own early stopping has 30 too
    before_iteration = False

    def __init__(self, store: FitCheckpoints | None, stopping_rounds: int = 0) -> None:
        self.store, self.stopping_rounds = store, stopping_rounds
        self.best: list[list[Any]] = []  # per validation metric: [score, iteration, results]

    def resume(self) -> tuple[Any, int]:
        """(the booster to continue, the rounds it holds) with its stopping state set back; (None,
        0) without a store or on a first attempt. The text passes the registry's check of
        LightGBM's format (model_store.check_lightgbm_text) before LightGBM parses it."""
        import lightgbm as lgb

        from model_steps.model_store import check_lightgbm_text

        last = self.store.latest() if self.store else None
        if last is None:
            return None, 0
        booster = _load_checked(last, "booster.txt", check_lightgbm_text,
                                lambda path: lgb.Booster(model_file=str(path)))  # fmt: skip
        self.best = last.state[LIGHTGBM]["best"]
        return booster, last.epoch

    def __call__(self, env: Any) -> None:
        scored = [r for r in env.evaluation_result_list if r[0] != "training"]
        if self.stopping_rounds:
            self._stop_or_go(env, scored)
        if self.store is not None and self.store.due():
            text = env.model.model_to_string().encode()
            self.store.save(env.iteration + 1, {"booster": np.frombuffer(text, dtype=np.uint8)},
                            {LIGHTGBM: {"best": self.best}})  # fmt: skip

    def _stop_or_go(self, env: Any, scored: list[Any]) -> None:
        """Raise LightGBM's EarlyStopException (the best iteration, its results) when a metric has
        not improved for ``stopping_rounds`` rounds, or at the last round."""
        import lightgbm as lgb

        if not scored:
            raise ValueError("early stopping needs a validation set (valid_sets)")
        if not self.best:
            self.best = [[None, 0, []] for _ in scored]
        for i, (_, _, value, higher_better) in enumerate(scored):
            best, iteration, _ = self.best[i]
            if best is None or (value > best if higher_better else value < best):
                self.best[i] = [value, env.iteration, [list(r) for r in scored]]
            elif env.iteration - iteration >= self.stopping_rounds:
                raise lgb.callback.EarlyStopException(iteration, _results(self.best[i][2]))
        if env.iteration == env.end_iteration - 1:
            raise lgb.callback.EarlyStopException(self.best[0][1], _results(self.best[0][2]))


def _results(rows: list[list[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in rows]
