"""Find the model a step runs, and its settings, with errors that name the DAG file and the model.

The DAG module names the model by import path (``"model": "mlmodels.<name>"``, optionally
``module:ATTRIBUTE``, default attribute ``MODEL``) or by the name of an entry point in the group
``mlplatform.models``. The control plane only checks the form of that string (it cannot import
model code); here the package is imported, and a missing or broken package is a clear
:class:`~model_steps.contract.UsageError` (exit 2), never a traceback.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import traceback
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from mlplatform_contract.settings import CustomerSettings, step_settings
from model_steps.contract import ENV_MODEL, StepContext, UsageError, load_json_env
from model_steps.model_api import Model
from model_steps.search_space import space_problems

ENTRY_POINT_GROUP = "mlplatform.models"
SETTING_TYPES = ("string", "int", "double", "date")


@dataclass(frozen=True)
class ModelRef:
    ref: str
    task: str | None = None
    source: str = "the DAG module"

    @property
    def where(self) -> str:
        return f"{self.source} names model {self.ref!r}"


def model_ref(ctx: StepContext) -> ModelRef:
    raw = load_json_env(ctx.env, ENV_MODEL)
    if not raw.get("ref"):
        raise UsageError(
            f"{ENV_MODEL} is not set: the step does not know which model to run. The control "
            'plane sets it from the DAG module\'s "model" field (e.g. {"ref": '
            '"mlmodels.<name>", "task": "binary_classification"})'
        )
    return ModelRef(str(raw["ref"]), raw.get("task"), str(raw.get("source") or "the DAG module"))


def _import(ref: ModelRef) -> Any:
    module_name, _, attribute = ref.ref.partition(":")
    if "." not in module_name and not attribute:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == module_name]
        if found:
            return found[0].load()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"{ref.where}, but no module {exc.name!r} is installed: is the model's package "
                "in this image / venv? (`make setup` installs every models/<name>/ package; CI "
                "builds a model image when the model declares extra requirements)"
            ) from None
        raise UsageError(
            f"{ref.where}: importing it failed, it needs {exc.name!r}, which is not installed "
            "(declare it in the model's pyproject.toml)"
        ) from None
    except Exception as exc:  # a broken model package: say where, not a traceback
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise UsageError(
            f"{ref.where}: importing it raised {type(exc).__name__}: {exc} "
            f"({frame.filename}:{frame.lineno})"
        ) from None
    value = getattr(module, attribute or "MODEL", None)
    if value is None:
        raise UsageError(
            f"{ref.where}: module {module_name} has no attribute {attribute or 'MODEL'}"
        )
    return value


def check_model(model: Any, ref: ModelRef) -> Model:
    """The declaration's own consistency, so a model author's slip is reported before any data."""
    if not isinstance(model, Model):
        raise UsageError(f"{ref.where}: it is a {type(model).__name__}, not a model_steps Model")
    problems = []
    if ref.task and ref.task != model.task:
        problems.append(f"the DAG module declares task {ref.task!r}, the model {model.task!r}")
    bad_types = {c: t for c, t in model.feature_schema.items() if t not in SETTING_TYPES}
    if bad_types:
        problems.append(f"feature_schema types {bad_types} (allowed: {', '.join(SETTING_TYPES)})")
    undeclared = [c for c in model.input_columns if c not in model.feature_schema]
    if undeclared:
        problems.append(f"inputs {undeclared} are not in feature_schema")
    if not model.suite.is_file():
        problems.append(
            f"its expectation suite {model.suite} does not exist (every model needs one)"
        )
    elif (stale := _suite_changes(model)) is not None:
        problems.append(stale)
    if not model.raw_tables:
        problems.append("it declares no raw tables")
    if model.positive_outcome not in ("good", "bad"):
        problems.append(f"positive_outcome {model.positive_outcome!r} (allowed: good, bad)")
    problems += space_problems(model.search_space, set(model.settings.model_fields))
    if problems:
        raise UsageError(f"{ref.where}, which is inconsistent: " + "; ".join(problems))
    return model


def _suite_changes(model: Model) -> str | None:
    """Why the suite's derived part is out of date (None when current or unreadable: validate
    names a broken file)."""
    from model_steps.expectations import check_current

    try:
        check_current(model, json.loads(model.suite.read_text()))
    except UsageError as exc:
        return str(exc)
    except (ValueError, KeyError, TypeError):
        return None
    return None


@cache
def _load(ref: ModelRef) -> Model:
    return check_model(_import(ref), ref)


@dataclass(frozen=True)
class LoadedModel:
    """The model, its validated ``model:`` settings and the platform's settings of this run."""

    model: Model
    settings: Any
    platform: CustomerSettings
    ref: ModelRef


def load(ctx: StepContext) -> LoadedModel:
    ref = model_ref(ctx)
    model = _load(ref)
    platform = parse_platform_settings(ctx.config, ref)
    try:
        settings = model.settings.model_validate(platform.model)
    except ValidationError as exc:
        problems = "; ".join(
            f"model.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(f"{ref.source}: settings for model {model.name}: {problems}") from None
    check_reward(model, platform, ref)
    return LoadedModel(model, settings, platform, ref)


def check_reward(model: Model, platform: CustomerSettings, ref: ModelRef) -> None:
    """A campaign rewarded on clicks needs the model's ``clicks`` hook: refused at step start."""
    spec = platform.crm.campaign
    if spec is not None and spec.reward == "click" and model.clicks is None:
        raise UsageError(
            f"{ref.source}: settings crm.campaign.reward: 'click' needs click events, but model "
            f"{model.name} declares no clicks hook (Model.clicks): declare one, or use "
            "reward 'conversion' (the model's label)"
        )


def parse_platform_settings(
    config: dict[str, Any], ref: ModelRef | None = None
) -> CustomerSettings:
    try:
        return step_settings(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        source = ref.source if ref else "STEP_CONFIG"
        raise UsageError(f"{source}: invalid settings: {problems}") from None


def model_context(
    ctx: StepContext,
    loaded: LoadedModel,
    rank: int = 0,
    size: int = 1,
    *,
    cutoff: dt.date | None = None,
    lookback_days: int | None = None,
) -> Any:
    """The hooks' context for this run, at the window of ``cutoff`` (default: the training
    cutoff, the last one whose label window has passed by the data date)."""
    from model_steps.features import training_cutoff, window
    from model_steps.model_api import ModelContext

    data = loaded.platform.data
    if cutoff is None:
        cutoff = training_cutoff(ctx.data_date, data.label_window_days)
    lookback = data.lookback_days if lookback_days is None else lookback_days
    return ModelContext(
        pipeline=ctx.pipeline,
        customer=ctx.customer,
        data_date=ctx.data_date,
        lake_uri=ctx.lake_uri,
        settings=loaded.settings,
        platform=loaded.platform,
        window=window(cutoff, lookback, data.label_window_days),
        hyperparameters={
            **loaded.platform.training.model_dump(),
            **loaded.settings.model_dump(mode="json"),
        },
        rank=rank,
        size=size,
    )
