"""The PyTorch variant of the example propensity model for the train step's tests
(framework_variants): its ``module`` (a small MLP: the numeric columns normalized by buffers the
fit sets, one embedding per categorical), its ``fit``, the binary ``MODEL`` and the two-class
``CLASSES_MODEL`` (its learning rate is what a tuning run varies). model_store's tests use
``module`` and ``train`` on data of their own."""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

import numpy as np
from framework_variants import two_class_variant, variant
from pydantic import Field

from mlmodels.customer_propensity.settings import PropensitySettings
from model_steps.checkpoints import FitCheckpoints, restore_torch, save_torch
from model_steps.model_api import FitData, ModelContext, ModuleInputs
from model_steps.search_space import LogUniform
from model_steps.serving import module_arrays


class TorchSettings(PropensitySettings):
    """The example's settings, plus the optimizer's step size (what a tuning run varies) and a
    test's simulated crash."""

    learning_rate: float = Field(0.05, gt=0, le=1, description="Adam's step size")
    die_after_epoch: int = Field(0, ge=0, description="SIGKILL the process once this epoch's "
                                 "checkpoint is committed (a first attempt only; 0: never)")  # fmt: skip


def module(inputs: ModuleInputs) -> Any:
    """The architecture: a function of the inputs only (model_store builds it to load weights)."""
    return Mlp(inputs)


def _mlp_class() -> type:
    import torch
    from torch import nn

    class _Mlp(nn.Module):
        def __init__(self, inputs: ModuleInputs, width: int = 16) -> None:
            super().__init__()
            k = len(inputs.numeric)
            self.register_buffer("mean", torch.zeros(k))
            self.register_buffer("scale", torch.ones(k))
            self.embeddings = nn.ModuleList(nn.Embedding(len(v) + 1, 3)
                                            for v in inputs.categorical.values())  # fmt: skip
            self.body = nn.Sequential(nn.Linear(k + 3 * len(self.embeddings), width), nn.ReLU(),
                                      nn.Linear(width, inputs.outputs))  # fmt: skip

        def forward(self, numeric: Any, codes: Any) -> Any:
            parts = [(numeric - self.mean) / self.scale]
            parts += [emb(codes[:, j]) for j, emb in enumerate(self.embeddings)]
            return self.body(torch.cat(parts, dim=1))

    return _Mlp


def Mlp(inputs: ModuleInputs) -> Any:  # builds the class on first use: torch imports lazily
    return _mlp_class()(inputs)


def train(inputs: ModuleInputs, x: np.ndarray, codes: np.ndarray, y: np.ndarray, *,
          task: str, seed: int, epochs: int = 30, lr: float = 0.05,
          checkpoints: FitCheckpoints | None = None, die_after_epoch: int = 0,
          batch_size: int | None = None) -> Any:  # fmt: skip
    """Adam on the arrays (full batch, or shuffled minibatches of ``batch_size``): the task's
    loss (logits for classes, the value else), checkpointed after each epoch and resumed from the
    latest checkpoint when there is one."""
    import torch

    torch.manual_seed(seed)
    net = module(inputs)
    y = np.asarray(y)
    net.mean.copy_(torch.from_numpy(x.mean(axis=0)))
    net.scale.copy_(torch.from_numpy(x.std(axis=0) + 1e-6))
    xt, ct = torch.from_numpy(x), torch.from_numpy(codes)
    if task == "multiclass_classification":
        loss_fn, target = torch.nn.CrossEntropyLoss(), torch.from_numpy(y.astype(np.int64))
    elif task == "regression":
        loss_fn, target = torch.nn.MSELoss(), torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    else:
        loss_fn = torch.nn.BCEWithLogitsLoss()
        target = torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    start = 0
    if checkpoints and (last := checkpoints.latest()):
        restore_torch(last, module=net, optimizer=opt)
        start = last.epoch
    for epoch in range(start, epochs):
        batches = torch.randperm(len(target)).split(batch_size) if batch_size else [slice(None)]
        for rows in batches:
            opt.zero_grad()
            loss_fn(net(xt[rows], ct[rows]), target[rows]).backward()
            opt.step()
        if checkpoints:
            save_torch(checkpoints, epoch + 1, module=net, optimizer=opt)
            if epoch + 1 == die_after_epoch and not start:
                os.kill(os.getpid(), signal.SIGKILL)  # a killed worker: no cleanup runs
    return net.eval()


def fit(data: FitData, ctx: ModelContext) -> Any:
    """The MLP on the platform's training split (its inputs coded as the served module's)."""
    inputs = data.module_inputs
    assert inputs is not None  # the platform sets it for a pytorch model
    x, codes = module_arrays(data.train, inputs.numeric, inputs.categorical)
    task = "multiclass_classification" if inputs.outputs > 1 else "binary_classification"
    return train(inputs, x, codes, data.train[data.label].to_numpy(), task=task, seed=data.seed,
                 epochs=60, lr=ctx.settings.learning_rate, checkpoints=data.checkpoints,
                 die_after_epoch=ctx.settings.die_after_epoch)  # fmt: skip


MODEL = dataclasses.replace(
    variant("pytorch", fit, module=module), settings=TorchSettings,
    search_space={"model.learning_rate": LogUniform(0.01, 0.1)},
)  # fmt: skip
CLASSES_MODEL = two_class_variant(MODEL)
