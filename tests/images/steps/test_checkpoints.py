"""A single-process fit's checkpoint store (model_steps.checkpoints.FitCheckpoints), in a local lake folder:
what it stores and refuses, and a PyTorch fit killed after epoch k that resumes at k and ends with
the very weights of the fit that was never stopped. The killed-and-retried train task, through the
step's command line, is test_train_pytorch's."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest

from model_steps.checkpoints import FORMAT, Checkpoints, FitCheckpoints
from model_steps.testing import FitKilled, KilledAfterEpoch


def test_the_latest_checkpoint_comes_back_and_only_it_is_kept(tmp_path) -> None:
    store = FitCheckpoints(f"file://{tmp_path}")
    assert store.latest() is None
    store.save(1, {"w": np.zeros(3)}, {"best": float("inf")})
    store.save(2, {"w": np.arange(3.0), "step": np.int64(7)}, {"best": 0.5, "names": ["a"]})
    back = FitCheckpoints(f"file://{tmp_path}").latest()
    assert back is not None and back.epoch == 2
    np.testing.assert_array_equal(back.tensors["w"], np.arange(3.0))
    assert back.tensors["step"] == 7 and back.state == {"best": 0.5, "names": ["a"]}
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["_LATEST.json", "epoch=0002"]
    record = json.loads((folder / "_LATEST.json").read_text())
    assert record["format"] == FORMAT and record["files"] == ["state.json", "tensors.npz"]
    assert [epoch for epoch, _ in store.epochs_saved] == [1, 2]


def test_a_store_commits_at_most_one_checkpoint_per_its_seconds(tmp_path) -> None:
    """training.checkpoint_seconds: a fit may save every round; the store writes when it is due."""
    store = FitCheckpoints(f"file://{tmp_path}", min_seconds=3600)
    assert not store.due()
    store.save(1, {"w": np.zeros(2)})
    assert store.latest() is None and store.epochs_saved == []
    assert not (tmp_path / "checkpoints").exists()


def test_what_is_not_data_is_refused_before_anything_is_written(tmp_path) -> None:
    store = FitCheckpoints(f"file://{tmp_path}")
    with pytest.raises(ValueError, match="'booster' is object"):
        store.save(1, {"booster": np.array([object()])})
    with pytest.raises(ValueError, match="must be JSON"):
        store.save(1, state={"fn": print})
    with pytest.raises(ValueError, match="int >= 1"):
        store.save(0, {"w": np.zeros(1)})
    assert not (tmp_path / "checkpoints").exists()


def test_a_crafted_checkpoint_is_read_as_data_or_refused(tmp_path) -> None:
    """An object array in the tensors file (the way a pickle gets in) is refused when it is read;
    a Keras checkpoint's record is not taken for a fit's."""
    store = FitCheckpoints(f"file://{tmp_path}")
    store.save(1, {"w": np.zeros(2)})
    npz = tmp_path / "checkpoints" / "epoch=0001" / "tensors.npz"
    np.savez(npz, w=np.array([{"x": 1}], dtype=object))  # np.save pickles an object array
    with zipfile.ZipFile(npz) as z:
        assert b"pickle" in z.read("w.npy") or b"\x80" in z.read("w.npy")
    with pytest.raises(ValueError, match="allow_pickle=False"):
        FitCheckpoints(f"file://{tmp_path}").latest()
    Checkpoints(f"file://{tmp_path}/keras").save_files(lambda tmp: None, 1, {"prefix": "ckpt"})
    with pytest.raises(ValueError, match="not a single-process fit's checkpoint"):
        FitCheckpoints(f"file://{tmp_path}/keras").latest()


def test_a_killed_pytorch_fit_resumes_at_its_epoch_with_the_same_result(tmp_path) -> None:
    """Module, Adam's moments and step, the RNG: the resumed fit's weights are the uninterrupted
    fit's, bit for bit (its minibatches are shuffled from the RNG every epoch)."""
    torch = pytest.importorskip("torch")
    import pytorch_variant

    from model_steps.model_api import ModuleInputs

    inputs = ModuleInputs(numeric=("a", "b"), categorical={"c": ("x", "y")}, outputs=1)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 2)).astype(np.float32)
    codes = rng.integers(0, 2, (64, 1))
    y = (x[:, 0] > 0).astype(np.float32)

    def fit(store: FitCheckpoints) -> dict:
        net = pytorch_variant.train(inputs, x, codes, y, task="binary_classification", seed=1,
                                    epochs=6, checkpoints=store, batch_size=16)  # fmt: skip
        return net.state_dict()

    whole = fit(FitCheckpoints(f"file://{tmp_path}/whole"))
    resumed, retry = _killed_and_resumed(fit, f"file://{tmp_path}/killed", 4)
    assert retry.resumed_epoch == 4 and [e for e, _ in retry.epochs_saved] == [5, 6]
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


class _ForgetsTheOptimizer:
    """A fit's store wrapper that hands back the weights and the RNG but not Adam's moments: the
    mistake of a fit that restores its module only."""

    def __init__(self, inner: FitCheckpoints) -> None:
        self.inner = inner

    def save(self, epoch, tensors=None, state=None) -> None:  # type: ignore[no-untyped-def]
        self.inner.save(epoch, tensors, state)

    def due(self) -> bool:
        return self.inner.due()

    def latest(self):  # type: ignore[no-untyped-def]
        last = self.inner.latest()
        kept = {k: v for k, v in (last.tensors if last else {}).items()
                if not k.startswith("optimizer/")}  # fmt: skip
        return last and dataclasses.replace(last, tensors=kept)


def test_the_hook_kit_resumes_a_checkpointing_fit_and_names_one_that_resumes_otherwise() -> None:
    """The model's own test (model_steps.testing) kills a fit that checkpoints after its first
    epoch and resumes it: the variant's fit resumes to the same outputs; a fit that forgets the
    optimizer's state is named, with what to restore."""
    pytest.importorskip("torch")
    import pandas as pd
    import pytorch_variant

    from mlplatform_contract.settings import CustomerSettings
    from model_steps import testing
    from model_steps.model_api import ModelContext

    good = pytorch_variant.MODEL
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({c: rng.normal(size=300) for c in good.numeric_features})
    for c, vocabulary in good.categorical_features.items():
        frame[c] = rng.choice(list(vocabulary), 300)
    frame[good.label_column] = (frame[good.numeric_features[0]] > 0).astype(int)
    frame[good.key] = [f"D{i}" for i in range(300)]
    ctx = ModelContext(pipeline=good.name, customer="kit", data_date=None, lake_uri="",  # type: ignore[arg-type]
                       settings=good.settings(), platform=CustomerSettings())  # fmt: skip

    def forgetful(data, ctx):  # type: ignore[no-untyped-def]
        store = _ForgetsTheOptimizer(data.checkpoints) if data.checkpoints else None
        return pytorch_variant.fit(dataclasses.replace(data, checkpoints=store), ctx)

    predicted, resumed = testing._fit_other(good, ctx, frame, frame)
    np.testing.assert_array_equal(predicted, resumed)
    bad = dataclasses.replace(good, fit=forgetful)
    predicted, resumed = testing._fit_other(bad, ctx, frame, frame)
    run = testing.HookRun(frame, frame, {"success": True, "failed": []}, predicted, [{"o": 1}], [],
                          resumed=resumed)  # fmt: skip
    assert any("killed after its first checkpoint and resumed, predicts otherwise" in p
               and "the optimizer" in p for p in testing.hook_run_problems(bad, run))  # fmt: skip


def _noisy_rows() -> tuple[np.ndarray, np.ndarray]:
    """250 rows whose label the first column predicts through noise: a boosting run on the first
    150 stops early on the last 100, well before its last round."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(250, 4))
    return x, (x[:, 0] + rng.normal(scale=1.5, size=250) > 0).astype(float)


def _killed_and_resumed(fit, run_dir: str, k: int, *args):  # type: ignore[no-untyped-def]
    """``fit(store, *args)`` killed after committing round ``k``, then its retry: (the retry's
    result, its store)."""
    with pytest.raises(FitKilled):
        fit(KilledAfterEpoch(run_dir, k), *args)
    retry = FitCheckpoints(run_dir)
    return fit(retry, *args), retry


def _boost(store: FitCheckpoints, x: np.ndarray, y: np.ndarray, rounds: int = 60):  # type: ignore[no-untyped-def]
    """An early-stopped booster fitted as the XGBoost scaffold fits one, on a noisy holdout (it
    stops well before ``rounds``)."""
    import xgboost as xgb

    from model_steps.checkpoints import resume_xgboost, xgboost_checkpoints

    train, holdout = xgb.DMatrix(x[:150], y[:150]), xgb.DMatrix(x[150:], y[150:])
    stop = xgb.callback.EarlyStopping(rounds=5)
    booster, done = resume_xgboost(store, stop)
    params = {"objective": "binary:logistic", "eta": 0.3, "max_depth": 3, "nthread": 1, "seed": 0}
    return xgb.train(params, train, num_boost_round=rounds - done, evals=[(holdout, "holdout")],
                     xgb_model=booster, callbacks=[stop, xgboost_checkpoints(store, stop)],
                     verbose_eval=False)  # fmt: skip


def test_a_killed_xgboost_fit_continues_its_booster_and_stops_where_it_would_have(tmp_path):  # type: ignore[no-untyped-def]
    """The booster and its early stopping's history come back: the resumed fit has the trees, the
    best iteration and the stopping round of the fit that ran through."""
    pytest.importorskip("xgboost")
    x, y = _noisy_rows()
    whole_store = FitCheckpoints(f"file://{tmp_path}/whole")
    whole = _boost(whole_store, x, y)
    stopped_at = whole.num_boosted_rounds()
    assert stopped_at < 60 and int(whole.attr("best_iteration")) < stopped_at - 1
    resumed, retry = _killed_and_resumed(_boost, f"file://{tmp_path}/killed", stopped_at - 3, x, y)
    assert retry.resumed_epoch == stopped_at - 3
    assert resumed.num_boosted_rounds() == stopped_at
    assert resumed.attr("best_iteration") == whole.attr("best_iteration")
    assert resumed.save_raw("json") == whole.save_raw("json")


def test_a_checkpoint_booster_that_is_not_xgboost_json_is_refused(tmp_path) -> None:
    pytest.importorskip("xgboost")
    from model_steps.checkpoints import resume_xgboost
    from model_steps.model_store import ModelRefused

    store = FitCheckpoints(f"file://{tmp_path}")
    store.save(3, {"booster": np.frombuffer(b'{"learner": {}, "extra": 1}', np.uint8)})
    with pytest.raises(ModelRefused, match="not an XGBoost JSON model"):
        resume_xgboost(FitCheckpoints(f"file://{tmp_path}"))


def _lgb_boost(store: FitCheckpoints, x: np.ndarray, y: np.ndarray, rounds: int = 80):  # type: ignore[no-untyped-def]
    """An early-stopped booster fitted as preferred_channel fits one (LightGBMCheckpoints)."""
    import lightgbm as lgb

    from model_steps.checkpoints import LightGBMCheckpoints

    stop_and_save = LightGBMCheckpoints(store, stopping_rounds=5)
    booster, done = stop_and_save.resume()
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 7, "num_threads": 1,
              "seed": 0, "deterministic": True, "verbose": -1}  # fmt: skip
    train = lgb.Dataset(x[:150], y[:150])
    holdout = lgb.Dataset(x[150:], y[150:], reference=train)
    return lgb.train(params, train, num_boost_round=rounds - done, valid_sets=[holdout],
                     init_model=booster, callbacks=[stop_and_save])  # fmt: skip


def test_a_killed_lightgbm_fit_continues_its_booster_and_stops_where_it_would_have(tmp_path):  # type: ignore[no-untyped-def]
    """As for XGBoost: the resumed booster has the trees and the best iteration of the fit that ran
    through, and predicts as it does."""
    pytest.importorskip("lightgbm")
    x, y = _noisy_rows()
    whole_store = FitCheckpoints(f"file://{tmp_path}/whole")
    whole = _lgb_boost(whole_store, x, y)
    # LightGBM hands back the trees up to the best iteration; the last checkpoint is the round
    # before the one that stopped
    last_saved = whole_store.epochs_saved[-1][0]
    assert whole.current_iteration() == whole.best_iteration < last_saved < 80
    resumed, retry = _killed_and_resumed(
        _lgb_boost, f"file://{tmp_path}/killed", last_saved - 2, x, y
    )
    assert retry.resumed_epoch == last_saved - 2 and retry.epochs_saved[-1][0] == last_saved
    assert resumed.best_iteration == whole.best_iteration
    trees = [b.model_to_string().split("\nparameters:")[0] for b in (resumed, whole)]
    assert trees[0] == trees[1]  # the parameters after it differ: num_iterations asked
    np.testing.assert_array_equal(resumed.predict(x), whole.predict(x))


def test_a_checkpoint_booster_that_is_not_lightgbm_text_is_refused(tmp_path) -> None:
    pytest.importorskip("lightgbm")
    from model_steps.checkpoints import LIGHTGBM, LightGBMCheckpoints
    from model_steps.model_store import ModelRefused

    store = FitCheckpoints(f"file://{tmp_path}")
    store.save(3, {"booster": np.frombuffer(b"import os\n", np.uint8)}, {LIGHTGBM: {"best": []}})
    with pytest.raises(ModelRefused, match="not a LightGBM text model"):
        LightGBMCheckpoints(FitCheckpoints(f"file://{tmp_path}")).resume()
