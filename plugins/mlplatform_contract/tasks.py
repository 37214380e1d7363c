"""Task types: what a model predicts decides its loss, its metrics, the gate's direction and the
scores table's value column. Both sides read this table: the control plane to check a module's gate
settings at parse time, the workload to train, evaluate and score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TaskType = Literal["binary_classification", "regression", "multiclass_classification"]


@dataclass(frozen=True)
class Task:
    name: TaskType
    metrics: tuple[str, ...]  # what evaluate measures on the holdout, in report order
    lower_is_better: frozenset[str]
    output_column: str  # the pyfunc model's output and the scores table's value column
    default_metric: str  # the gate's comparison metric when the module names none
    default_thresholds: dict[str, float] = field(default_factory=dict)
    label_type: Literal["int", "double"] = "int"
    # several classes: each class's probability is the column ``<score_prefix><class>`` besides
    # ``output_column``; "" for a task with one value column
    score_prefix: str = ""

    def better(self, metric: str, a: float, b: float, margin: float = 0.0) -> bool:
        """Whether ``a`` beats ``b`` by at least ``margin`` on ``metric`` (direction-aware)."""
        return a <= b - margin if metric in self.lower_is_better else a >= b + margin


TASKS: dict[str, Task] = {
    "binary_classification": Task(
        name="binary_classification",
        metrics=("roc_auc", "pr_auc", "log_loss", "brier", "lift_top_decile"),
        lower_is_better=frozenset({"log_loss", "brier"}),
        output_column="score",
        default_metric="roc_auc",
        default_thresholds={"roc_auc": 0.6},
        label_type="int",
    ),
    "regression": Task(
        name="regression",
        metrics=("rmse", "mae", "r2", "spearman"),
        lower_is_better=frozenset({"rmse", "mae"}),
        output_column="prediction",
        default_metric="rmse",
        # r2 > 0: the model must beat predicting the training mean, whatever the label's unit
        default_thresholds={"r2": 0.0},
        label_type="double",
    ),
    # the label is the class index 0..k-1 of the model's classes; the served model gives one
    # probability column per class (``score_<class>``) and ``predicted_class`` (the argmax's name)
    "multiclass_classification": Task(
        name="multiclass_classification",
        metrics=("log_loss", "macro_f1", "accuracy"),
        lower_is_better=frozenset({"log_loss"}),
        output_column="predicted_class",
        default_metric="log_loss",
        # macro F1 > 0: the model must predict some class right (chance depends on k and the mix)
        default_thresholds={"macro_f1": 0.0},
        label_type="int",
        score_prefix="score_",
    ),
}
TASK_TYPES: tuple[str, ...] = tuple(TASKS)


def task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task type {name!r}; known: {', '.join(TASK_TYPES)}") from None
