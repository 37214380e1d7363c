"""The PyTorch format of model_steps.model_store (``pytorch-safetensors``: the trained module's
state_dict in safetensors, the architecture the model's own code): a trained module round-trips
and predicts as its own forward (binary, regression, several classes; an unseen category takes
the vocabulary's extra code); a file that is not safetensors (a pickle), a header naming an extra
or a missing tensor, a wrong shape or dtype, an extra file in the manifest, another model's
manifest and a load without the model's code are refused with the model, version and file named,
before safetensors parses anything. ``torch.load`` is never called (it raises in every test)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import pytorch_variant  # noqa: E402
from model_store_helpers import copy_saved, reseal  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from model_steps import model_store  # noqa: E402
from model_steps.contract import StepError  # noqa: E402
from model_steps.model_store import IoSpec, ModelRefused  # noqa: E402
from model_steps.serving import TorchPredictor, io_spec, module_arrays  # noqa: E402

WHAT = "model m-acme v3 (run abc)"
MSG = re.escape(WHAT)
VOCABULARY = ("red", "green", "blue")
TASKS = {"binary": "binary_classification", "regression": "regression",
         "classes": "multiclass_classification"}  # fmt: skip


@pytest.fixture(autouse=True)
def no_torch_load(monkeypatch):
    """Loading a registered model never unpickles: torch.load raises wherever it is reached."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)


def _model(kind: str):  # type: ignore[no-untyped-def]
    """The variant model with this test's columns, as the code a step runs."""
    return dataclasses.replace(
        pytorch_variant.MODEL, task=TASKS[kind], numeric_features=("x1", "x2"),
        categorical_features={"colour": VOCABULARY}, feature_schema={
            "x1": "double", "x2": "int", "colour": "string"},
        classes=("low", "mid", "high") if kind == "classes" else (),
    )  # fmt: skip


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.integers(0, 9, n),
                          "colour": rng.choice(list(VOCABULARY), n)})  # fmt: skip
    logit = 1.5 * frame["x1"] + (frame["colour"] == "red") * 2.0 - 1.0
    return frame, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _fit(kind: str):  # type: ignore[no-untyped-def]
    model = _model(kind)
    frame, y = _frame(600, 1)
    if kind == "regression":
        y = frame["x1"].to_numpy() * 2 + y
    elif kind == "classes":
        y = np.digitize(frame["x1"], [-1, 1])
    inputs = model.module_inputs
    x, codes = module_arrays(frame, inputs.numeric, inputs.categorical)
    return model, pytorch_variant.train(inputs, x, codes, y, task=model.task, seed=0), frame


def _save(directory: Path, model, module, frame: pd.DataFrame) -> str:  # type: ignore[no-untyped-def]
    manifest = model_store.save(directory, module, fmt="pytorch-safetensors", model=model.name,
                                task=model.task, io=IoSpec(**io_spec(model)),
                                example=frame.head(5), code=model)  # fmt: skip
    return manifest.digest


def _own_forward(module, model, frame: pd.DataFrame) -> np.ndarray:  # type: ignore[no-untyped-def]
    x, codes = module_arrays(frame, model.numeric_features, model.categorical_features)
    with torch.no_grad():
        y = module(torch.from_numpy(x), torch.from_numpy(codes)).double()
    if model.task == "regression":
        return y.numpy()
    return (torch.softmax(y, 1) if y.shape[1] > 1 else torch.sigmoid(y)).numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, str]:
    model, module, frame = _fit("binary")
    directory = tmp_path_factory.mktemp("torch") / "model"
    return directory, _save(directory, model, module, frame)


@pytest.mark.parametrize("kind", ["binary", "regression", "classes"])
def test_a_pytorch_model_round_trips_and_predicts_as_its_own_forward(tmp_path, kind) -> None:
    model, module, frame = _fit(kind)
    digest = _save(tmp_path / "model", model, module, frame)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "MANIFEST.json", "MLmodel", "io.json", "model.safetensors"]  # fmt: skip
    served = model_store.load_dir(tmp_path / "model", digest, WHAT, model)
    assert isinstance(served, TorchPredictor) and not served.model.training
    scored, _ = _frame(300, 7)
    scored.loc[:4, "colour"] = ["purple", None, "red", "green", "blue"]  # unseen, missing
    out = served.predict(scored)
    want = _own_forward(module, model, scored)
    if kind == "classes":
        assert list(out.columns) == ["score_low", "score_mid", "score_high", "predicted_class"]
        np.testing.assert_allclose(out[list(model.class_columns)].to_numpy(), want, rtol=1e-6)
        assert list(out["predicted_class"]) == [model.classes[i] for i in want.argmax(axis=1)]
    else:
        assert list(out.columns) == [model.output_column]
        np.testing.assert_allclose(out[model.output_column].to_numpy(), want[:, 0], rtol=1e-6)
    assert served.inputs(scored)[1][:2, 0].tolist() == [3, 3]  # len(vocabulary): not in it


def _rewrite(directory: Path, tensors: dict) -> str:  # type: ignore[type-arg]
    save_file(tensors, str(directory / "model.safetensors"))
    return reseal(directory)


def _state(directory: Path) -> dict:  # type: ignore[type-arg]
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s | {"extra.weight": torch.zeros(2)}, r"extra \['extra.weight'\]"),
    (lambda s: {k: v for k, v in s.items() if k != "body.2.bias"}, r"missing \['body.2.bias'\]"),
    (lambda s: s | {"body.2.bias": torch.zeros(2)}, r"body.2.bias: F32 \[2\], the module's F32 \[1\]"),
    (lambda s: s | {"mean": s["mean"].double()}, r"mean: F64 \[2\], the module's F32 \[2\]"),
])  # fmt: skip
def test_a_header_that_is_not_the_modules_state_dict_is_refused(saved, tmp_path, change,
                                                                message) -> None:  # fmt: skip
    directory = copy_saved(saved, tmp_path)
    digest = _rewrite(directory, change(_state(directory)))
    with pytest.raises(ModelRefused, match=rf"{MSG}: model.safetensors: .*{message}"):
        model_store.load_dir(directory, digest, WHAT, _model("binary"))


def test_a_pickle_saved_as_safetensors_is_refused_and_never_unpickled(saved, tmp_path) -> None:
    import pickle

    directory = copy_saved(saved, tmp_path)
    (directory / "model.safetensors").write_bytes(pickle.dumps({"body.0.weight": [1.0]}))
    digest = reseal(directory)
    with pytest.raises(ModelRefused, match=rf"{MSG}: model.safetensors: not a safetensors file"):
        model_store.load_dir(directory, digest, WHAT, _model("binary"))


def test_an_extra_file_another_models_manifest_or_no_code_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    (directory / "model.py").write_text("import os\n")
    digest = reseal(directory)
    with pytest.raises(ModelRefused, match=rf"{MSG}: .*\['model.py'\] that format "
                                           "'pytorch-safetensors' does not have"):  # fmt: skip
        model_store.load_dir(directory, digest, WHAT, _model("binary"))
    (directory / "model.py").unlink()
    digest = reseal(directory, model="another_model")
    with pytest.raises(ModelRefused, match=rf"{MSG}: .*'another_model''s, this step runs"):
        model_store.load_dir(directory, digest, WHAT, _model("binary"))
    with pytest.raises(ModelRefused, match=rf"{MSG}: .*builds its module from the model's code"):
        model_store.load_dir(*saved, WHAT)
    io = json.loads((saved[0] / "io.json").read_text())
    with pytest.raises(ModelRefused, match=rf"{MSG}: io.json: inputs .* are not model"):
        model_store.load_dir(*saved, WHAT, dataclasses.replace(
            _model("binary"), numeric_features=tuple(reversed(io["numeric"]))))  # fmt: skip


def test_only_a_module_of_tensors_is_saved(tmp_path) -> None:
    io = IoSpec(**io_spec(_model("regression")))
    with pytest.raises(StepError, match=r"saves a trained torch\.nn\.Module, not a dict"):
        model_store.save(tmp_path / "m", {"w": torch.zeros(1)}, fmt="pytorch-safetensors",
                         model="m", task="regression", io=io)  # fmt: skip


ONLY_PYTORCH = r"a module \(the architecture\) is given for framework 'pytorch' and only then"


def test_a_module_is_declared_for_pytorch_and_only_then() -> None:
    model = pytorch_variant.MODEL
    assert model.store_format == "pytorch-safetensors"
    assert (
        model.module_inputs.outputs == 1
        and pytorch_variant.CLASSES_MODEL.module_inputs.outputs == 2
    )
    with pytest.raises(ValueError, match=ONLY_PYTORCH):
        dataclasses.replace(model, module=None)
    with pytest.raises(ValueError, match=ONLY_PYTORCH):
        dataclasses.replace(model, framework="lightgbm")
