"""A registered model is data (model_steps.model_store): a good model directory loads and predicts
as the network it was saved from; crafted ones are refused with a message naming the model and the
file, before anything in them is deserialized."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

tf = pytest.importorskip("tensorflow")

from model_store_helpers import copy_saved, reseal  # noqa: E402

from mlmodels.customer_propensity import MODEL  # noqa: E402
from mlplatform_contract.settings import CustomerSettings  # noqa: E402
from model_steps import model_store  # noqa: E402
from model_steps.model_api import ModelContext  # noqa: E402
from model_steps.model_store import IoSpec, ModelRefused  # noqa: E402
from model_steps.serving import KerasPredictor, io_spec  # noqa: E402
from model_steps.training import build_model  # noqa: E402

WHAT = "model customer_propensity-acme-foods v7 (run abc)"
IO = IoSpec(**io_spec(MODEL))


@pytest.fixture(scope="module")
def network():
    n = len(MODEL.numeric_features)
    ctx = ModelContext(pipeline=MODEL.name, customer="acme-foods", data_date=None,  # type: ignore[arg-type]
                       lake_uri="", settings=MODEL.settings(), platform=CustomerSettings())  # fmt: skip
    rng = np.random.default_rng(3)
    return build_model(MODEL, ctx, rng.random(n), 1 + rng.random(n))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    data = {c: rng.random(64) * 10 for c in MODEL.numeric_features}
    data |= {
        c: rng.choice([*vocab, "unseen"], 64) for c, vocab in MODEL.categorical_features.items()
    }
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, network, frame) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("store") / "model"
    manifest = model_store.save(directory, network, fmt="keras-v3", model=MODEL.name,
                                task=MODEL.task, io=IO, example=frame.head(5))  # fmt: skip
    return directory, manifest.digest


def _rezip(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members = edit(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_a_good_model_loads_and_predicts_as_the_network(saved, network, frame) -> None:
    directory, digest = saved
    assert sorted(p.name for p in directory.iterdir()) == [
        "MANIFEST.json", "MLmodel", "io.json", "model.keras"]  # fmt: skip
    manifest = model_store.Manifest.model_validate_json((directory / "MANIFEST.json").read_text())
    assert manifest.format == "keras-v3" and manifest.digest == digest and len(digest) == 64
    assert "flavors: {}" in (directory / "MLmodel").read_text()  # a schema only, no python_model
    served = model_store.load_dir(directory, digest, WHAT)
    got = served.predict(frame)
    want = KerasPredictor(network, IO).predict(frame)  # the in-memory network, as before
    assert list(got.columns) == ["score"] and len(got) == 64
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-6, atol=1e-7)


def test_tampered_weights_are_refused_naming_the_file(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    raw = bytearray((directory / "model.keras").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (directory / "model.keras").write_bytes(bytes(raw))
    with pytest.raises(ModelRefused, match=r"v7 \(run abc\): file model\.keras has sha256 \w+, "
                                           r"its manifest says"):  # fmt: skip
        model_store.load_dir(directory, saved[1], WHAT)
    # the manifest rewritten to match: the recorded digest (the gate's) still differs
    reseal(directory)
    with pytest.raises(ModelRefused, match=r"v7 \(run abc\): digest mismatch in MANIFEST\.json"):
        model_store.load_dir(directory, saved[1], WHAT)


def test_a_model_without_a_recorded_digest_is_refused(saved) -> None:
    with pytest.raises(ModelRefused, match=r"no recorded digest \(mlops\.model_digest\)"):
        model_store.load_dir(saved[0], None, WHAT)


def test_a_manifest_naming_an_unknown_format_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    (directory / "python_model.pkl").write_bytes(b"\x80\x04K\x01.")  # a pickle payload
    digest = reseal(directory, format="mlflow-pyfunc-pickle")
    with pytest.raises(ModelRefused, match=r"names format 'mlflow-pyfunc-pickle', which this "
                                           r"image does not load \(known: \['keras-v3', "
                                           r"'lightgbm-text', 'pytorch-safetensors', "
                                           r"'sklearn-skops', "
                                           r"'xgboost-json'\]\)"):  # fmt: skip
        model_store.load_dir(directory, digest, WHAT)


def test_a_lambda_layer_is_refused_even_with_a_consistent_digest(tmp_path) -> None:
    inputs = tf.keras.Input(shape=(2,), name="numeric")
    out = tf.keras.layers.Lambda(lambda x: x * 2, name="payload")(inputs)
    net = tf.keras.Model(inputs, out)
    io = IoSpec(numeric=["a", "b"], categorical=[], output="score")
    manifest = model_store.save(tmp_path / "model", net, fmt="keras-v3", model="m",
                                task="regression", io=io)  # fmt: skip
    with pytest.raises(
        ModelRefused, match=r"model\.keras: config\..* is a Lambda, which holds code"
    ):
        model_store.load_dir(tmp_path / "model", manifest.digest, WHAT)


def test_a_class_from_outside_keras_is_refused_before_keras_sees_it(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)

    def point_at_os(members: dict[str, bytes]) -> dict[str, bytes]:
        config = json.loads(members["config.json"])
        layer = config["config"]["layers"][-1]
        layer["module"], layer["class_name"] = "os", "system"
        return {**members, "config.json": json.dumps(config).encode()}

    _rezip(directory / "model.keras", point_at_os)
    digest = reseal(directory)
    with pytest.raises(ModelRefused, match=r"\(system\) comes from module 'os', not Keras"):
        model_store.load_dir(directory, digest, WHAT)


def test_an_extra_member_in_the_keras_zip_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    _rezip(directory / "model.keras", lambda m: {**m, "payload.pkl": b"\x80\x04K\x01."})
    digest = reseal(directory)
    with pytest.raises(ModelRefused, match=r"unexpected member\(s\) \['payload\.pkl'\]"):
        model_store.load_dir(directory, digest, WHAT)


def test_a_manifest_with_a_path_for_a_file_name_is_refused(saved, tmp_path) -> None:
    directory = copy_saved(saved, tmp_path)
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    manifest["files"]["../../etc/passwd"] = "0" * 64
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelRefused, match=r"MANIFEST\.json is not valid: .*not a plain file name"):
        model_store.load_dir(directory, saved[1], WHAT)


def test_load_run_fetches_only_the_files_the_manifest_names(saved, tmp_path, monkeypatch) -> None:
    """Through MLflow's artifact API (a file store): a pickle dropped beside the model directory
    is never downloaded, and the model loads from the verified files."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # no server needed for this check
    mlflow.set_tracking_uri(f"file://{tmp_path}/mlruns")
    fetched: list[str] = []
    real = mlflow.artifacts.download_artifacts

    def spy(**kwargs):  # type: ignore[no-untyped-def]
        fetched.append(kwargs["artifact_path"])
        return real(**kwargs)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", spy)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(saved[0]), artifact_path="model")
        (tmp_path / "python_model.pkl").write_bytes(b"\x80\x04K\x01.")
        mlflow.log_artifact(str(tmp_path / "python_model.pkl"), artifact_path="model")
    served = model_store.load_run(run.info.run_id, saved[1], WHAT)
    assert sorted(fetched) == ["model/MANIFEST.json", "model/MLmodel", "model/io.json",
                               "model/model.keras"]  # fmt: skip
    row = pd.DataFrame({c: [1.0] for c in MODEL.numeric_features}
                       | {c: ["x"] for c in MODEL.categorical_features})  # fmt: skip
    assert len(served.predict(row)) == 1
