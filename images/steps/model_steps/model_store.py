"""A registered model is data: weight files in a format the platform fixes, a manifest, a digest.

A model directory (the training run's artifact ``model/``)::

    MANIFEST.json   format name, model, task, io spec, each file's sha256, one overall digest
    io.json         which feature columns feed which input, the output column's name
    model.keras     the weights and architecture (format ``keras-v3``: Keras's zip format)
    MLmodel         the column signature only, so the MLflow UI shows the schema (never read back)

Loading never executes anything from the artifact store: the wrapper code is the image's own
(``model_steps.serving``), the format's loader reads only data (Keras with ``safe_mode=True``, after
a check of the architecture's config that admits Keras's own classes only), no pickle. Before
anything is parsed, every file's sha256 is recomputed and the overall digest compared with the one
recorded where the artifact's writer cannot change it (the registered version's tag, written by
the gate; the training run's tag for the gate's own candidate): a mismatch refuses the model,
naming the model, version and file.

A PyTorch model (``pytorch-safetensors``) stores its weights only: its architecture is the model
package's code (``Model.module``), which the caller passes (``code``); see ``_torch_load``.

Formats are registered by name (``FORMATS``): a new framework adds one ``ModelFormat`` whose
``save``/``load`` read and write only data (docs/registry-access.md, "Model formats").
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from model_steps.contract import StepError
from model_steps.lake import sha256_file

MODEL_ARTIFACT = "model"  # artifact path of the model directory in the training run
MANIFEST_FILE = "MANIFEST.json"
IO_FILE = "io.json"
MLMODEL_FILE = "MLmodel"
DIGEST_TAG = "mlops.model_digest"  # run tag (train) and version tag (gate): the expected digest
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ModelRefused(StepError):
    """A model artifact that fails verification: it is never loaded."""


class IoSpec(BaseModel):
    """What the served model needs to know about a model_steps Model (``io.json``)."""

    model_config = ConfigDict(extra="forbid")
    numeric: list[str]
    categorical: list[str]
    output: str
    # several classes: their names (the output holds one of them) and each one's probability column
    classes: list[str] | None = None
    scores: list[str] | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_version: Literal[1] = 1
    format: str = Field(description="a key of model_store.FORMATS")
    model: str
    task: str
    io: IoSpec
    files: dict[str, str] = Field(description="file name -> sha256 (hex) of its bytes")
    digest: str = Field(description="sha256 over the fields above: the model's identity")

    @field_validator("files")
    @classmethod
    def _plain_names(cls, files: dict[str, str]) -> dict[str, str]:
        for name, sha in files.items():
            if not _SAFE_NAME.match(name) or name == MANIFEST_FILE:
                raise ValueError(f"file name {name!r} is not a plain file name")
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                raise ValueError(f"file {name!r}: {sha!r} is not a sha256 hex digest")
        return files


class Predictor(Protocol):
    """serving.FramePredictor: ``predict(frame)`` is ``outputs(inputs(frame), frame.index)``."""

    def predict(self, frame: Any) -> Any: ...
    def inputs(self, frame: Any) -> Any: ...
    def outputs(self, inputs: Any, index: Any) -> Any: ...


@dataclass(frozen=True)
class ModelFormat:
    """One safe storage format: ``save`` writes ``files`` into a directory, ``load`` reads them back
    as a Predictor using the image's own code only (no pickle, no code from the files)."""

    name: str
    files: tuple[str, ...]
    save: Callable[[Any, Path], None]
    # (directory, io, code): ``code`` is the Model whose package the step runs (model_api), for a
    # format whose architecture is code (pytorch-safetensors); None where the caller has none
    load: Callable[[Path, IoSpec, Any], Predictor]
    # whether ``load`` builds the framework's object with ``code`` (whose model the manifest names)
    uses_code: bool = False


FORMATS: dict[str, ModelFormat] = {}


def register_format(fmt: ModelFormat) -> ModelFormat:
    FORMATS[fmt.name] = fmt
    return fmt


def content_digest(fmt: str, model: str, task: str, io: IoSpec, files: dict[str, str]) -> str:
    """The overall digest: sha256 of the manifest's canonical JSON without the digest itself."""
    body = {"format_version": 1, "format": fmt, "model": model, "task": task,
            "io": io.model_dump(exclude_none=True),  # a one-column io digests as before
            "files": dict(sorted(files.items()))}  # fmt: skip
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


# ---------------------------------------------------------------- save


def save(
    directory: Path, obj: Any, *, fmt: str, model: str, task: str, io: IoSpec,
    example: Any = None, code: Any = None,
) -> Manifest:  # fmt: skip
    """Write ``obj`` in format ``fmt``, io.json, the MLmodel signature (``example``: a few input
    rows, predicted by the directory loaded back with ``code``, load_dir's) and the manifest into
    ``directory``; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    fmt_ = FORMATS[fmt]
    fmt_.save(obj, directory)
    (directory / IO_FILE).write_text(json.dumps(io.model_dump(), sort_keys=True))
    if example is not None:
        _write_signature(directory, fmt_.load(directory, io, code), example)
    files = {
        p.name: sha256_file(str(p)) for p in sorted(directory.iterdir()) if p.name != MANIFEST_FILE
    }
    manifest = Manifest(format=fmt, model=model, task=task, io=io, files=files,
                        digest=content_digest(fmt, model, task, io, files))  # fmt: skip
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=1))
    return manifest


def save_model(directory: Path, fitted: Any, model: Any, example: Any = None) -> Manifest:
    """``save`` for a model_api Model's fitted object: its framework's format, its name, task and
    io (serving.io_spec), its own code for a format that loads with it."""
    from model_steps.serving import io_spec

    return save(directory, fitted, fmt=model.store_format, model=model.name, task=model.task,
                io=IoSpec(**io_spec(model)), example=example, code=model)  # fmt: skip


def round_trip(fitted: Any, model: Any, what: str) -> Predictor:
    """``fitted`` saved (save_model) into a scratch directory and loaded back, verified: it
    predicts exactly as its registered version would, and nothing is logged anywhere."""
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        directory = Path(tmp) / MODEL_ARTIFACT
        return load_dir(directory, save_model(directory, fitted, model).digest, what, model)


def _write_signature(directory: Path, served: Predictor, example: Any) -> None:
    """An MLmodel file with the column signature and no flavor: the MLflow UI's schema view."""
    import warnings

    from mlflow.models import Model as MlflowModel
    from mlflow.models import infer_signature

    with warnings.catch_warnings():  # the integer-column hint: feature columns are never null
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, served.predict(example))
    MlflowModel(signature=signature).save(str(directory / MLMODEL_FILE))


# ---------------------------------------------------------------- verify and load


def verify(directory: Path, expected_digest: str | None, what: str) -> Manifest:
    """The manifest of ``directory`` once every file and the digest check out; ModelRefused
    (naming ``what``: the model and version, and the file) otherwise."""
    if not expected_digest:
        raise ModelRefused(f"{what}: no recorded digest ({DIGEST_TAG}); a model without one "
                           "(registered before models were data, or not by the gate) is not "
                           "loaded")  # fmt: skip
    manifest = _read_manifest(directory, what)
    if manifest.format not in FORMATS:
        raise ModelRefused(f"{what}: {MANIFEST_FILE} names format {manifest.format!r}, which this "
                           f"image does not load (known: {sorted(FORMATS)})")  # fmt: skip
    missing = [f for f in (*FORMATS[manifest.format].files, IO_FILE) if f not in manifest.files]
    if missing:
        raise ModelRefused(f"{what}: {MANIFEST_FILE} lacks the file(s) {missing} of format "
                           f"{manifest.format!r}")  # fmt: skip
    extra = sorted(set(manifest.files) - {*FORMATS[manifest.format].files, IO_FILE, MLMODEL_FILE})
    if extra:  # nothing beyond what the format reads: no side file for a loader to pick up
        raise ModelRefused(f"{what}: {MANIFEST_FILE} names file(s) {extra} that format "
                           f"{manifest.format!r} does not have")  # fmt: skip
    for name, sha in manifest.files.items():
        path = directory / name
        if not path.is_file():
            raise ModelRefused(f"{what}: file {name} named in {MANIFEST_FILE} is missing")
        if (actual := sha256_file(str(path))) != sha:
            raise ModelRefused(f"{what}: file {name} has sha256 {actual}, its manifest says {sha}: "
                               "the artifact was changed after it was written")  # fmt: skip
    digest = content_digest(manifest.format, manifest.model, manifest.task, manifest.io,
                            manifest.files)  # fmt: skip
    if digest != manifest.digest or digest != expected_digest:
        raise ModelRefused(f"{what}: digest mismatch in {MANIFEST_FILE}: content {digest}, "
                           f"manifest {manifest.digest}, recorded {expected_digest}")  # fmt: skip
    io = IoSpec.model_validate_json((directory / IO_FILE).read_text())
    if io != manifest.io:
        raise ModelRefused(f"{what}: {IO_FILE} differs from the io spec in {MANIFEST_FILE}")
    return manifest


def _read_manifest(directory: Path, what: str) -> Manifest:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ModelRefused(f"{what}: no {MANIFEST_FILE}: not a platform model directory")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}"
                           for e in exc.errors())  # fmt: skip
        raise ModelRefused(f"{what}: {MANIFEST_FILE} is not valid: {fields}") from None


def load_dir(
    directory: Path, expected_digest: str | None, what: str, code: Any = None
) -> Predictor:
    """Verify, then load with the format's (the image's) code. ``code``: the model_api Model the
    caller runs (the step's model, named by the DAG module, its package installed in the image),
    which a format whose architecture is code (``uses_code``) builds it from: its manifest must
    then name that model."""
    manifest = verify(directory, expected_digest, what)
    if FORMATS[manifest.format].uses_code and code is not None and code.name != manifest.model:
        raise ModelRefused(f"{what}: {MANIFEST_FILE} is model {manifest.model!r}'s, this step "
                           f"runs model {code.name!r}")  # fmt: skip
    try:
        return FORMATS[manifest.format].load(directory, manifest.io, code)
    except ModelRefused as exc:  # the format's own check: say which model and version
        raise ModelRefused(f"{what}: {exc}") from None
    except Exception as exc:  # a verified file the format still cannot read: refuse, clearly
        raise ModelRefused(f"{what}: format {manifest.format!r} refused its files: {exc}") from None


def download(run_id: str, dest: Path, what: str) -> Path:
    """Fetch the manifest of run ``run_id``'s model directory, then only the files it names."""
    import mlflow

    def fetch(name: str) -> None:
        local = Path(mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=f"{MODEL_ARTIFACT}/{name}", dst_path=str(dest)
        ))  # fmt: skip
        if local != dest / name:  # MLflow puts a single file under its base name
            shutil.move(local, dest / name)

    fetch(MANIFEST_FILE)
    for name in _read_manifest(dest, what).files:
        fetch(name)
    return dest


def load_run(run_id: str, expected_digest: str | None, what: str, code: Any = None) -> Predictor:
    """The model directory logged by run ``run_id``, verified against ``expected_digest``."""
    with tempfile.TemporaryDirectory(prefix="model-") as tmp:
        return load_dir(download(run_id, Path(tmp), what), expected_digest, what, code)


def load_version(name: str, version: str, code: Any = None) -> Predictor:
    """A registered version, verified against its digest tag (the gate's, set at registration)."""
    import mlflow

    mv = mlflow.MlflowClient().get_model_version(name, version)
    what = f"model {name} v{version} (run {mv.run_id})"
    return load_run(mv.run_id, mv.tags.get(DIGEST_TAG), what, code)


# ---------------------------------------------------------------- the Keras format

KERAS_FILE = "model.keras"
# zip members of a Keras v3 file; nothing else (no SavedModel, no pickled objects) is read
_KERAS_MEMBERS = re.compile(r"^(config\.json|metadata\.json|model\.weights\.h5|assets/.*)$")
# the only modules a class or function in the architecture may come from (what the platform's
# networks use); anything else would make Keras import and call it
KERAS_MODULES = frozenset({
    "keras.layers", "keras.initializers", "keras.regularizers", "keras.constraints",
    "keras.activations", "keras.src.engine.functional", "keras.src.engine.sequential",
})  # fmt: skip


def _keras_save(net: Any, directory: Path) -> None:
    import tensorflow as tf

    serving = tf.keras.models.clone_model(net)  # without a (Horovod-wrapped) optimizer
    serving.set_weights(net.get_weights())
    serving.save(directory / KERAS_FILE)


def check_keras_config(path: Path) -> None:
    """Refuse a .keras file whose members or architecture could run code when deserialized:
    only Keras's own layers, initializers and the like (``KERAS_MODULES``), no Lambda layers or
    lambda objects, no custom or registered objects, no extra members."""
    with zipfile.ZipFile(path) as zf:
        odd = [n for n in zf.namelist() if not _KERAS_MEMBERS.match(n)]
        if odd:
            raise ModelRefused(f"{path.name}: unexpected member(s) {odd}")
        config = json.loads(zf.read("config.json"))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            cls = node.get("class_name")
            if cls in ("Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda"):
                raise ModelRefused(f"{path.name}: {where} is a {cls}, which holds code")
            module = node.get("module")
            if "module" in node and module is not None and module not in KERAS_MODULES:
                raise ModelRefused(f"{path.name}: {where} ({cls}) comes from module {module!r}, "
                                   "not Keras")  # fmt: skip
            if node.get("registered_name") not in (None, cls) and "class_name" in node:
                raise ModelRefused(f"{path.name}: {where} is a registered custom object "
                                   f"{node.get('registered_name')!r}")  # fmt: skip
            for k, v in node.items():
                walk(v, f"{where}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(config, "config")


def _keras_load(directory: Path, io: IoSpec, code: Any = None) -> Predictor:
    import tensorflow as tf

    from model_steps.serving import KerasPredictor

    path = directory / KERAS_FILE
    check_keras_config(path)
    net = tf.keras.models.load_model(path, safe_mode=True, compile=False)
    return KerasPredictor(net, io)


KERAS = register_format(ModelFormat("keras-v3", (KERAS_FILE,), _keras_save, _keras_load))


# ---------------------------------------------------------------- the LightGBM format

LIGHTGBM_FILE = "model.lgb.txt"
_LIGHTGBM_HEAD = "tree\n"  # the first line of LightGBM's text model format


def _lightgbm_save(fitted: Any, directory: Path) -> None:
    """A Booster, or a fitted scikit-learn style LGBMModel's booster, in LightGBM's text format."""
    import lightgbm as lgb

    booster = getattr(fitted, "booster_", fitted)
    if not isinstance(booster, lgb.Booster):
        raise StepError(f"the lightgbm format saves a lightgbm Booster or LGBMModel, not a "
                        f"{type(fitted).__name__}")  # fmt: skip
    booster.save_model(str(directory / LIGHTGBM_FILE))


def check_lightgbm_text(path: Path) -> None:
    """Refuse a file that is not LightGBM's text model format (its parser reads numbers and names;
    the file holds no code, but only its own format is handed to it)."""
    with path.open("rb") as fh:
        head = fh.read(len(_LIGHTGBM_HEAD))
    if head != _LIGHTGBM_HEAD.encode():
        raise ModelRefused(f"{path.name}: not a LightGBM text model (starts with {head!r})")


def _lightgbm_load(directory: Path, io: IoSpec, code: Any = None) -> Predictor:
    import lightgbm as lgb

    from model_steps.serving import LightGBMPredictor

    path = directory / LIGHTGBM_FILE
    check_lightgbm_text(path)
    return LightGBMPredictor(lgb.Booster(model_file=str(path)), io)


LIGHTGBM = register_format(
    ModelFormat("lightgbm-text", (LIGHTGBM_FILE,), _lightgbm_save, _lightgbm_load)
)


# ---------------------------------------------------------------- the scikit-learn format (skops)

SKOPS_FILE = "model.skops"
# what skops does not trust by itself and the image does: the histogram gradient boosting
# estimators' tree predictors and input check. Any other type in the file refuses the model (skops
# would otherwise import and build it); never pickle or joblib.
SKOPS_TRUSTED = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.utils.validation.check_array", "functools.partial",
})  # fmt: skip


def _skops_save(fitted: Any, directory: Path) -> None:
    import skops.io
    from sklearn.base import BaseEstimator

    if not isinstance(fitted, BaseEstimator):
        raise StepError(f"the sklearn format saves a fitted scikit-learn estimator, not a "
                        f"{type(fitted).__name__}")  # fmt: skip
    skops.io.dump(fitted, directory / SKOPS_FILE)


def _skops_load(directory: Path, io: IoSpec, code: Any = None) -> Predictor:
    import skops.io

    from model_steps.serving import SklearnPredictor

    path = directory / SKOPS_FILE
    untrusted = set(skops.io.get_untrusted_types(file=path))
    if odd := sorted(untrusted - SKOPS_TRUSTED):
        raise ModelRefused(f"{path.name}: holds type(s) {odd} that the image does not trust")
    return SklearnPredictor(skops.io.load(path, trusted=sorted(untrusted)), io)


SKOPS = register_format(ModelFormat("sklearn-skops", (SKOPS_FILE,), _skops_save, _skops_load))


# ---------------------------------------------------------------- the XGBoost format

XGBOOST_FILE = "model.xgb.json"
# what a multiclass model's booster must output: one probability per class (multi:softmax gives the
# class index, binary:logitraw a margin); a binary or regression objective serves as it predicts
XGBOOST_CLASS_OBJECTIVES = frozenset({"binary:logistic", "multi:softprob"})


def _xgboost_save(fitted: Any, directory: Path) -> None:
    """A Booster, or a fitted scikit-learn style XGBModel's booster, in XGBoost's JSON format
    (with early stopping's ``best_iteration`` attribute, which the served model predicts up to,
    as the fitted object's own predict does)."""
    import xgboost as xgb

    booster = fitted.get_booster() if isinstance(fitted, xgb.XGBModel) else fitted
    if not isinstance(booster, xgb.Booster):
        raise StepError(f"the xgboost format saves an xgboost Booster or XGBModel, not a "
                        f"{type(fitted).__name__}")  # fmt: skip
    booster.save_model(str(directory / XGBOOST_FILE))


def check_xgboost_json(path: Path) -> dict[str, Any]:
    """Refuse a file that is not XGBoost's JSON model format before XGBoost parses it: a JSON
    object of exactly ``learner`` and ``version``, the learner naming its booster and objective
    (the format holds numbers and names, no code; nothing else is handed to XGBoost). Returns
    the learner's objective section."""
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelRefused(f"{path.name}: not an XGBoost JSON model (not JSON: {exc})") from None
    if not isinstance(doc, dict) or set(doc) != {"learner", "version"}:
        keys = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise ModelRefused(f"{path.name}: not an XGBoost JSON model (top level {keys}, not "
                           "['learner', 'version'])")  # fmt: skip
    learner = doc["learner"]
    objective = learner.get("objective") if isinstance(learner, dict) else None
    booster = learner.get("gradient_booster") if isinstance(learner, dict) else None
    if not (isinstance(objective, dict) and isinstance(objective.get("name"), str)
            and isinstance(booster, dict) and isinstance(booster.get("name"), str)):  # fmt: skip
        raise ModelRefused(f"{path.name}: not an XGBoost JSON model (its learner names no "
                           "objective or gradient booster)")  # fmt: skip
    return objective


def _xgboost_load(directory: Path, io: IoSpec, code: Any = None) -> Predictor:
    import xgboost as xgb

    from model_steps.serving import XGBoostPredictor

    path = directory / XGBOOST_FILE
    objective = check_xgboost_json(path)["name"]
    if io.classes and objective not in XGBOOST_CLASS_OBJECTIVES:
        raise ModelRefused(f"{path.name}: objective {objective!r} does not give class "
                           f"probabilities (a model with classes needs one of "
                           f"{sorted(XGBOOST_CLASS_OBJECTIVES)})")  # fmt: skip
    booster = xgb.Booster()
    booster.load_model(str(path))
    return XGBoostPredictor(booster, io)


XGBOOST = register_format(
    ModelFormat("xgboost-json", (XGBOOST_FILE,), _xgboost_save, _xgboost_load)
)


# ---------------------------------------------------------------- the PyTorch format (safetensors)

TORCH_FILE = "model.safetensors"
# torch dtype name -> safetensors' header name (what a state_dict of weights and buffers holds)
SAFETENSORS_DTYPES = {
    "float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
    "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}  # fmt: skip
_SAFETENSORS_MAX_HEADER = 64 << 20  # a header names tensors; beyond this it is not a weights file


def _torch_save(module: Any, directory: Path) -> None:
    """The module's ``state_dict`` (weights and buffers, tensors only) in safetensors' format:
    the architecture is the model's code (``Model.module``), never stored."""
    import torch
    from safetensors.torch import save_file

    if not isinstance(module, torch.nn.Module):
        raise StepError(f"the pytorch format saves a trained torch.nn.Module, not a "
                        f"{type(module).__name__}")  # fmt: skip
    state = module.state_dict()
    if odd := sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor)):
        raise StepError(f"the pytorch format saves tensors only; the state_dict holds {odd}")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
              str(directory / TORCH_FILE))  # fmt: skip


def safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Each tensor's (dtype, shape) as the file's header names them, read as JSON before any
    library parses the file: a file that is not safetensors (a pickle, a zip) is refused."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    if not 0 < size <= min(len(raw) - 8, _SAFETENSORS_MAX_HEADER):
        raise ModelRefused(f"{path.name}: not a safetensors file (no header of its size)")
    try:
        header = json.loads(raw[8 : 8 + size])
        tensors = {k: (v["dtype"], list(v["shape"])) for k, v in header.items()
                   if k != "__metadata__"}  # fmt: skip
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise ModelRefused(f"{path.name}: not a safetensors file (header: {exc!r})") from None
    return tensors


def check_state_header(path: Path, expected: dict[str, tuple[str, list[int]]]) -> None:
    """Refuse the file unless its header names exactly the module's state_dict: the same keys,
    each with the module's dtype and shape."""
    found = safetensors_header(path)
    problems = (
        [f"missing {sorted(set(expected) - set(found))}"] if set(expected) - set(found) else []
    )
    if extra := sorted(set(found) - set(expected)):
        problems.append(f"extra {extra}")
    problems += [f"{k}: {found[k][0]} {found[k][1]}, the module's {want[0]} {want[1]}"
                 for k, want in expected.items() if k in found and found[k] != want]  # fmt: skip
    if problems:
        raise ModelRefused(f"{path.name}: its tensors are not the module's state_dict: "
                           + "; ".join(problems))  # fmt: skip


def _torch_load(directory: Path, io: IoSpec, code: Any = None) -> Predictor:
    """Build the module from the model's own code, check the file's header against its
    state_dict, then load the tensors into it (``load_state_dict(strict=True)``).

    Why the code comes from the caller: a PyTorch architecture is Python, and a registered
    model is data, so the file holds weights only and the module is built by the package the
    step runs (``code``: the model the DAG module names, installed in the step's image; the
    step passes the model it loaded). The artifact never chooses what runs: its manifest must name
    that same model (load_dir), its io.json the inputs the code declares, and its tensors exactly
    the module's keys, dtypes and shapes. ``torch.load`` (pickle) is never called."""
    import torch
    from safetensors.torch import load_file

    from model_steps.serving import TorchPredictor

    if code is None or getattr(code, "module", None) is None:
        raise ModelRefused("format pytorch-safetensors builds its module from the model's code "
                           "(Model.module), and the caller named no such model")  # fmt: skip
    inputs = code.module_inputs
    declared = (list(inputs.numeric), list(inputs.categorical), list(code.classes) or None)
    if declared != (io.numeric, io.categorical, io.classes):
        raise ModelRefused(f"{IO_FILE}: inputs {io.numeric} {io.categorical} (classes "
                           f"{io.classes}) are not model {code.name}'s {declared}")  # fmt: skip
    module = code.module(inputs)
    if not isinstance(module, torch.nn.Module):
        raise ModelRefused(f"model {code.name}'s module hook gave a {type(module).__name__}, "
                           "not a torch.nn.Module")  # fmt: skip
    expected = {k: (SAFETENSORS_DTYPES.get(str(v.dtype).removeprefix("torch."), str(v.dtype)),
                    list(v.shape)) for k, v in module.state_dict().items()}  # fmt: skip
    path = directory / TORCH_FILE
    check_state_header(path, expected)
    module.load_state_dict(load_file(str(path), device="cpu"), strict=True)
    return TorchPredictor(module, io, inputs, code.task)


TORCH = register_format(
    ModelFormat("pytorch-safetensors", (TORCH_FILE,), _torch_save, _torch_load, uses_code=True)
)
