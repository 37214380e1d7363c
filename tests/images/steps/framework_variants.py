"""The example propensity model in another framework, for the train step's tests: the same
declarations (tables, features, label, suite), another ``framework`` and a ``fit`` instead of a
network. The variant modules (``<framework>_variant.py``) hold only their ``fit``; the step's
process imports them through PYTHONPATH (tests/images/steps)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlmodels.customer_propensity import MODEL as KERAS_MODEL
from model_steps import expectations
from model_steps.model_api import FitData, Framework, Model, ModelContext


def variant(
    framework: Framework, fit: Callable[[FitData, ModelContext], Any], **hooks: Any
) -> Model:
    """``hooks``: the framework's other hooks (pytorch: its ``module``)."""
    return dataclasses.replace(KERAS_MODEL, framework=framework, fit=fit, network=None, **hooks)


def two_class_variant(model: Model) -> Model:
    """The same table read as a task with several classes (two: whether the diner converts), so
    the class columns run through train, the gate and scoring. Its suite is the derived part for
    its declarations, written where the process runs (a file here would go stale with the
    model's)."""
    suite = Path(tempfile.gettempdir()) / f"{model.framework}_variant_classes-{os.getpid()}.json"
    classes = dataclasses.replace(
        model, task="multiclass_classification", classes=("stays", "converts"), suite=suite
    )
    suite.write_text(json.dumps(expectations.skeleton(classes)))
    return classes
