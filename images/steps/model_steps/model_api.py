"""The model contract: what a model package implements, and what the platform hands it.

A model is a package (``models/<name>/``, an import path such as ``mlmodels.<name>``) whose
module attribute ``MODEL`` is a :class:`Model`. The platform owns everything around the hooks: the
raw-zone checks, point in time (features only ever see rows before the cutoff, labels only rows in
the label window), the Horovod loop, checkpoints, MLflow, the gate, scoring and the CRM transport.
The model owns what only it knows:

=====================  =====================================================================
``raw_tables``         the raw tables it reads, with their schemas (checked generically)
``features``           Spark: point-in-time frames -> one row per entity, ``feature_schema``
``label``              Spark: label-window frames -> (key, label); missing keys get ``label_fill``
``clicks``             optional, Spark: label-window frames -> the keys that clicked (a campaign
                       rewarded on clicks, settings ``crm.campaign.reward: click``)
``suite``              its Great Expectations suite file, next to its code
``task``               binary_classification | regression: metrics, gate direction, score column
``framework``          keras (default: the Horovod loop) | lightgbm | sklearn | xgboost | pytorch:
                       training, storage
``network``            Keras: the platform's preprocessed inputs -> the output tensor
``train_fn``           optional escape hatch (Keras): the whole fit under the same context
``fit``                a non-Keras framework's single-process fit: FitData -> the fitted object
``module``             PyTorch: ModuleInputs -> the untrained ``torch.nn.Module`` (the architecture:
                       the registered file holds its weights only, model_store loads them into it)
``crm_select/record``  which scored rows are pushed, and what a CRM record holds
``settings``           the pydantic schema of its ``model:`` settings section
``example_data``       writes a tiny raw zone its hooks run on in `make test`
``steps``              its own steps (same CLI contract), placed by the DAG module's extra_steps
``search_space``       what a tuning run may vary: ``training.<field>``/``model.<field>`` ->
                       Choice | Uniform | LogUniform | IntRange (model_steps.search_space)
=====================  =====================================================================

Hooks get one context object; they import Spark/TensorFlow themselves (this module imports neither).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from mlplatform_contract.tasks import TASKS, Task, TaskType
from model_steps.raw_schema import RawTable
from model_steps.search_space import Distribution

CUTOFF_COLUMN = "cutoff_date"  # added by the platform to every feature table


class NoModelSettings(BaseModel):
    """For a model without settings of its own: the ``model:`` section must be empty."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Window:
    """Point in time, computed by the platform from the data date and the data settings."""

    cutoff: dt.date  # the as-of day: features use events up to its end
    lookback_start: dt.datetime
    cutoff_end: dt.datetime  # cutoff + 1 day, 00:00 UTC
    label_end: dt.datetime  # cutoff_end + label window


@dataclass(frozen=True)
class ModelContext:
    """What every hook gets. ``rank``/``size`` are Horovod's in training (0/1 elsewhere)."""

    pipeline: str
    customer: str
    data_date: dt.date
    lake_uri: str
    settings: Any  # the model's own settings (an instance of Model.settings)
    platform: Any  # mlplatform_contract.settings.CustomerSettings: the platform's sections
    window: Window | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    rank: int = 0
    size: int = 1


@dataclass(frozen=True)
class NetworkInputs:
    """The platform's input layers for ``Model.network``: ``inputs`` (the Keras Inputs the served
    model takes: one numeric matrix and one string input per categorical) and ``features`` (numeric
    columns normalized with the training split's statistics, categoricals one-hot through their
    vocabularies, concatenated)."""

    inputs: dict[str, Any]
    features: Any
    numeric: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class TrainingData:
    """What ``train_fn`` gets: this rank's shards (columns + label) and the ready datasets."""

    train: Any
    holdout: Any
    train_dataset: Any
    holdout_dataset: Any
    steps_per_epoch: int
    inputs: NetworkInputs


# framework -> the model_store format its fitted object is saved in (loaded without running code)
FRAMEWORK_FORMATS: dict[str, str] = {
    "keras": "keras-v3", "lightgbm": "lightgbm-text", "sklearn": "sklearn-skops",
    "xgboost": "xgboost-json", "pytorch": "pytorch-safetensors",
}  # fmt: skip
Framework = Literal["keras", "lightgbm", "sklearn", "xgboost", "pytorch"]


@dataclass(frozen=True)
class ModuleInputs:
    """What ``Model.module`` builds a PyTorch module for. Its ``forward(numeric, codes)`` takes the
    numeric columns as one [n, len(numeric)] float32 tensor (raw values: the module normalizes
    them itself, e.g. with buffers its ``fit`` sets) and the categoricals as one [n,
    len(categorical)] int64 tensor of codes: each value's position in its column's vocabulary,
    ``len(vocabulary)`` for a value not in it or missing (serving.module_arrays builds both, for
    ``fit`` and for serving). It returns [n, outputs]: a binary task's logit, a regression's
    value, or one logit per class (the platform applies the sigmoid or softmax)."""

    numeric: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]]  # column -> vocabulary (code = position)
    outputs: int


@dataclass(frozen=True)
class Checkpoint:
    """A committed checkpoint of a fit: the units it completed (``epoch``), its numeric arrays and
    its JSON state."""

    epoch: int
    tensors: Mapping[str, Any]  # name -> numpy array
    state: Mapping[str, Any]


class CheckpointStore(Protocol):
    """What ``FitData.checkpoints`` offers a fit (model_steps.checkpoints.FitCheckpoints)."""

    def latest(self) -> Checkpoint | None: ...

    # whether a save now would be committed (settings training.checkpoint_seconds)
    def due(self) -> bool: ...

    def save(
        self, epoch: int, tensors: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
    ) -> None: ...  # fmt: skip


@dataclass(frozen=True)
class FitData:
    """What a non-Keras ``fit`` gets: the whole training split and the holdout (pandas frames of
    the key, the input columns and the label; model_steps.training.holdout_mask), the column names
    and the platform's seed. One process: no Horovod ranks. PyTorch: ``module_inputs``, what
    ``Model.module`` builds for (serving.module_arrays codes the frames with its vocabularies).
    ``checkpoints``: the run's checkpoint store (model_steps.checkpoints; None where nothing
    resumes, as in the hook kit): a fit that saves after each epoch and starts from ``latest()``
    resumes a retried train task where the killed attempt stopped."""

    train: Any
    holdout: Any
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    label: str
    seed: int
    module_inputs: ModuleInputs | None = None
    checkpoints: CheckpointStore | None = None

    @classmethod
    def of(
        cls, model: Model, train: Any, holdout: Any, seed: int,
        checkpoints: CheckpointStore | None = None,
    ) -> FitData:  # fmt: skip
        """What ``model``'s fit gets on these frames (the train step's, a trial's, the hook kit's)."""
        return cls(train, holdout, tuple(model.numeric_features), tuple(model.categorical_features),
                   model.label_column, seed, model.module_inputs if model.module else None,
                   checkpoints)  # fmt: skip


@dataclass(frozen=True)
class Model:
    name: str
    task: TaskType
    key: str  # the entity column: one row per key in both feature tables and the scores
    raw_tables: tuple[RawTable, ...]
    feature_schema: Mapping[str, str]  # feature column -> string | int | double (no key, no label)
    numeric_features: tuple[str, ...]
    categorical_features: Mapping[str, tuple[str, ...]]  # column -> vocabulary
    features: Callable[[Mapping[str, Any], ModelContext], Any]
    label: Callable[[Mapping[str, Any], ModelContext], Any]
    crm_select: Callable[[Any, ModelContext], Any]
    crm_record: Callable[[Mapping[str, Any], ModelContext], dict[str, Any]]
    suite: Path
    # Keras (the default framework): the network on the platform's inputs, or ``train_fn``
    network: Callable[[NetworkInputs, ModelContext], Any] | None = None
    settings: type[BaseModel] = NoModelSettings
    label_column: str = "label"
    label_fill: float = 0
    # the keys of the contacts who clicked in the label window (same frames and cut as ``label``):
    # what a campaign with ``reward: click`` learns from (docs/campaigns.md); None = no click data
    clicks: Callable[[Mapping[str, Any], ModelContext], Any] | None = None
    train_fn: Callable[[TrainingData, ModelContext], Any] | None = None
    # another framework: one process fits on the whole training split and returns the fitted object
    # (lightgbm: a Booster or an LGBMModel; sklearn: an estimator; xgboost: a Booster or an
    # XGBModel; pytorch: the trained module that ``module`` builds), saved in its framework's format
    framework: Framework = "keras"
    fit: Callable[[FitData, ModelContext], Any] | None = None
    # pytorch: the architecture, a function of the inputs only: model_store builds it from the
    # model's own code when it loads a registered file of weights (the file never names code)
    module: Callable[[ModuleInputs], Any] | None = None
    # multiclass_classification: the class names, in the order of the label's indices 0..k-1
    classes: tuple[str, ...] = ()
    # writes example raw data for (lake URI, tenant, entities) and returns its data date: what
    # model_steps.testing.run_hooks (and so `make test`) runs the hooks on
    example_data: Callable[[str, str, int], dt.date] | None = None
    # the model's own steps (the DAG module places them with extra_steps): name -> hook taking the
    # step's contract context (model_steps.contract.StepContext) and the model context
    steps: Mapping[str, Callable[[Any, ModelContext], dict[str, Any]]] = field(default_factory=dict)
    # the hyperparameters a tuning run (settings tuning.enabled) samples, by dotted setting name
    search_space: Mapping[str, Distribution] = field(default_factory=dict)
    description: str = ""
    # whether the outcome the label measures is good when it is 1 (or higher): a conversion, spend;
    # or bad: churn, a complaint. Every judgement of the outcome uses it (the monitor's uplift
    # verdict: a campaign "wins" when it moves the outcome the good way).
    positive_outcome: Literal["good", "bad"] = "good"

    def __post_init__(self) -> None:
        if self.framework not in FRAMEWORK_FORMATS:
            raise ValueError(f"model {self.name}: framework {self.framework!r} is not one of "
                             f"{sorted(FRAMEWORK_FORMATS)}")  # fmt: skip
        if self.framework == "keras" and self.network is None and self.train_fn is None:
            raise ValueError(f"model {self.name}: a Keras model needs a network or a train_fn")
        if self.framework != "keras" and self.fit is None:
            raise ValueError(f"model {self.name}: framework {self.framework!r} needs a fit")
        if (self.framework == "pytorch") != (self.module is not None):
            raise ValueError(f"model {self.name}: a module (the architecture) is given for "
                             "framework 'pytorch' and only then")  # fmt: skip
        if bool(self.task_info.score_prefix) != bool(self.classes):
            raise ValueError(f"model {self.name}: classes {self.classes!r} must be given for a "
                             f"task with several classes and only then (task {self.task})")  # fmt: skip
        if self.classes and (self.framework == "keras" or len(self.classes) < 2
                             or len(set(self.classes)) != len(self.classes)):  # fmt: skip
            raise ValueError(f"model {self.name}: {self.task} needs two or more classes, each "
                             "named once, and a framework other than keras (the Horovod loop's "
                             "loss is binary or mse)")  # fmt: skip

    @property
    def class_columns(self) -> tuple[str, ...]:
        """One probability column per class (``score_<class>``), in class order; () for a task
        with one value column."""
        return tuple(f"{self.task_info.score_prefix}{c}" for c in self.classes)

    @property
    def store_format(self) -> str:
        """The model_store format its fitted object is saved in."""
        return FRAMEWORK_FORMATS[self.framework]

    @property
    def module_inputs(self) -> ModuleInputs:
        """What ``module`` builds for: the inputs, and one output per class (else one)."""
        return ModuleInputs(tuple(self.numeric_features), dict(self.categorical_features),
                            len(self.classes) or 1)  # fmt: skip

    @property
    def task_info(self) -> Task:
        return TASKS[self.task]

    @property
    def input_columns(self) -> tuple[str, ...]:
        return (*self.numeric_features, *self.categorical_features)

    @property
    def output_column(self) -> str:
        return self.task_info.output_column

    @property
    def table(self) -> dict[str, RawTable]:
        return {t.name: t for t in self.raw_tables}

    def table_schema(self, labelled: bool) -> dict[str, str]:
        """The feature table's columns in order: key, cutoff date, features, (label)."""
        schema = {self.key: "string", CUTOFF_COLUMN: "date", **self.feature_schema}
        if labelled:
            schema[self.label_column] = self.task_info.label_type
        return schema
