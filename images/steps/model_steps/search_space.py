"""A model's hyperparameter search space and the deterministic sampling of trials from it.

A model declares ``search_space`` in its :class:`~model_steps.model_api.Model`: a mapping from a
setting's dotted name to a distribution. A name is ``training.<field>`` (the platform's training
loop: ``learning_rate``, ``batch_size``, ``warmup_epochs``) or ``model.<field>`` (a field of the
model's own settings schema). A trial is one value per name, applied over the run's settings before
the train step reads them, so a sampled value is validated like any other setting.

Sampling is a pure function of (tuning.seed, pipeline, customer, trials): a retry of the tune step,
or of the whole DAG run, plans exactly the same trials. Trial 0 is the settings as configured (the
untuned baseline), so the search never picks something worse on validation than not searching.
Stdlib only: the model packages import these classes without TensorFlow or Spark.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The platform's training knobs a search may change (epochs is the budget, holdout and seed are
# the data plan: a trial never changes those).
TUNABLE_TRAINING = ("learning_rate", "batch_size", "warmup_epochs")


def _tidy(value: float) -> float:
    """Six significant digits: readable in MLflow and identical on every platform."""
    return float(f"{value:.6g}")


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (any JSON values: numbers, strings, lists such as layer widths)."""

    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return copy.deepcopy(self.values[rng.randrange(len(self.values))])

    def bounds(self) -> tuple[Any, ...]:
        return self.values

    def describe(self) -> dict[str, Any]:
        return {"choice": list(self.values)}


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return _tidy(rng.uniform(self.low, self.high))

    def bounds(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def describe(self) -> dict[str, Any]:
        return {"uniform": [self.low, self.high]}


@dataclass(frozen=True)
class LogUniform:
    """Uniform in log space: for scales such as learning rates (1e-4 .. 1e-2)."""

    low: float
    high: float

    def sample(self, rng: random.Random) -> float:
        return _tidy(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def bounds(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def describe(self) -> dict[str, Any]:
        return {"log_uniform": [self.low, self.high]}


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]`` (both included), on a grid of ``step``."""

    low: int
    high: int
    step: int = 1

    def sample(self, rng: random.Random) -> int:
        return rng.randrange(self.low, self.high + 1, self.step)

    def bounds(self) -> tuple[Any, ...]:
        return (self.low, self.high)

    def describe(self) -> dict[str, Any]:
        return {"int_range": [self.low, self.high, self.step]}


Distribution = Choice | Uniform | LogUniform | IntRange


def space_problems(space: Mapping[str, Distribution], model_fields: set[str]) -> list[str]:
    """What is wrong with a declared space, one ``search_space.<name>: why`` per problem."""
    problems = []
    for name, dist in space.items():
        section, _, field = name.partition(".")
        where = f"search_space.{name}"
        if section == "training" and field not in TUNABLE_TRAINING:
            problems.append(f"{where}: training.{field} is not tunable ({TUNABLE_TRAINING})")
        elif section == "model" and field not in model_fields:
            problems.append(f"{where}: the model's settings have no field {field!r}")
        elif section not in ("training", "model"):
            problems.append(f"{where}: name a setting as training.<field> or model.<field>")
        if isinstance(dist, Choice) and not dist.values:
            problems.append(f"{where}: a choice needs at least one value")
        elif isinstance(dist, Uniform | LogUniform | IntRange) and not dist.low < dist.high:
            problems.append(f"{where}: low must be below high ({dist.low}, {dist.high})")
        if isinstance(dist, LogUniform) and dist.low <= 0:
            problems.append(f"{where}: a log-uniform range must be positive")
        if not isinstance(dist, Choice | Uniform | LogUniform | IntRange):
            problems.append(f"{where}: {type(dist).__name__} is not a distribution")
    return problems


def describe(space: Mapping[str, Distribution]) -> dict[str, Any]:
    """JSON form of the space (MLflow parent run, tune step result)."""
    return {name: space[name].describe() for name in sorted(space)}


def current_values(space: Mapping[str, Distribution], config: Mapping[str, Any]) -> dict[str, Any]:
    """The configured value of each searched setting (trial 0, the baseline); None when unset."""
    return {
        name: (config.get(name.partition(".")[0]) or {}).get(name.partition(".")[2])
        for name in sorted(space)
    }


def sample_trials(
    space: Mapping[str, Distribution],
    trials: int,
    *,
    seed: int,
    pipeline: str,
    customer: str,
    baseline: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``trials`` parameter sets, the first the ``baseline`` (when given), the rest sampled from a
    generator seeded by (seed, pipeline, customer): never by the run id, so retries repeat them."""
    rng = random.Random(f"mlops-tuning:{seed}:{pipeline}:{customer}")
    out: list[dict[str, Any]] = []
    if baseline is not None:
        out.append({k: v for k, v in baseline.items() if v is not None})
    while len(out) < trials:
        out.append({name: space[name].sample(rng) for name in sorted(space)})
    return out


def apply(config: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` (a STEP_CONFIG) with each ``section.field`` of ``params`` set."""
    merged = copy.deepcopy(dict(config))
    for name, value in params.items():
        section, _, field = name.partition(".")
        merged.setdefault(section, {})[field] = value
    return merged
