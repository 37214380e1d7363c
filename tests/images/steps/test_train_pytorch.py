"""A PyTorch model through the step command lines, as the local runtime runs them (one process,
no horovodrun): the model's ``fit`` on the platform's training split returns a trained module, the
platform logs its state_dict in safetensors with its digest; the evaluate gate verifies, registers
and promotes it and the score step scores with it through the same platform interface, each
building the module from the step's own model code; the registered version loads back (verified
against its digest) and predicts as the module's own forward on the logged weights. Its run as a
task with several classes is test_train_lightgbm's, parametrised by framework.

The helpers and the world (the session's small feature lake, MLflow) are test_train_lightgbm's;
each test is a customer of its own. Budget: ~10 s per step process."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from test_train import RUN_ID
from test_train_lightgbm import TRAINING, ingest, step, trains_gates_and_scores, world  # noqa: F401

torch = pytest.importorskip("torch")
pytest.importorskip("mlflow")

BINARY = {"ref": "pytorch_variant", "task": "binary_classification", "source": "test"}


def test_a_pytorch_model_trains_registers_scores_and_loads_as_its_module(world) -> None:  # noqa: F811
    """Its first train attempt is killed (SIGKILL) after its third epoch's checkpoint: the retry
    resumes there in the same MLflow run and trains the remaining epochs only."""
    import mlflow

    # a checkpoint every epoch (training.checkpoint_seconds 0), the process killed after the third
    killed = {"model": {"die_after_epoch": 3}, "training": {**TRAINING, "checkpoint_seconds": 0}}
    res, decision, run = trains_gates_and_scores(world, "torch-one", "pytorch",
                                                 "model.safetensors", killed)  # fmt: skip
    assert res["resumed"] and res["start_epoch"] == 3 and res["epochs_run"] == 60 - 3
    assert res["checkpoint_uri"].endswith("/checkpoints/_LATEST.json")
    assert run.data.tags["resumed"] == "true" and run.data.metrics["resumed_at_epoch"] == 3
    runs = mlflow.MlflowClient(world[2]["tracking_uri"]).search_runs([run.info.experiment_id])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # one run: the killed one, continued
    _loads_and_predicts_as_its_module(decision["registered_model"],
                                      decision["candidate_version"], run.info.run_id)  # fmt: skip


def _loads_and_predicts_as_its_module(name: str, version: str, run_id: str) -> None:
    """The registered version through model_store (verified, the image's wrapper, the model's
    code) against the module's own forward on the weights file the run logged."""
    import mlflow
    import pandas as pd
    import pytorch_variant
    from safetensors.torch import load_file

    from model_steps import model_store
    from model_steps.serving import module_arrays

    model = pytorch_variant.MODEL
    served = model_store.load_version(name, version, model)
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=tmp,
                                                   artifact_path="model/model.safetensors")  # fmt: skip
        module = pytorch_variant.module(model.module_inputs)
        module.load_state_dict(load_file(path))
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({c: rng.normal(size=200) for c in model.numeric_features})
    for c, vocabulary in model.categorical_features.items():
        frame[c] = rng.choice(list(vocabulary), 200)
    x, codes = module_arrays(frame, model.numeric_features, model.categorical_features)
    with torch.no_grad():
        want = torch.sigmoid(module.eval()(torch.from_numpy(x), torch.from_numpy(codes)))
    np.testing.assert_allclose(served.predict(frame)["score"].to_numpy(),
                               want.double().numpy()[:, 0], rtol=1e-6)  # fmt: skip


def test_a_pytorch_model_is_tuned_one_fit_per_trial(world) -> None:  # noqa: F811
    """Tuning trials of a PyTorch model: each is one fit with the trial's learning rate on the
    "fit" part, scored through its storage format (the module built by the model's code) on the
    "validation" part; a trial logs no model."""
    import mlflow

    tuning = {"enabled": True, "trials": 2, "parallel_trials": 2, "seed": 7,
              "validation_fraction": 0.25, "halving": {"enabled": False}}  # fmt: skip
    customer, config = "torch-tuned", {"tuning": tuning, "training": TRAINING}
    ingest(world[0], customer, RUN_ID)
    rc, plan, log = step("tune", world, customer, BINARY, config)
    assert rc == 0, log
    trials = list(plan.values())
    assert trials[0]["params"] == {"model.learning_rate": 0.05}  # the configured settings
    done = [step("trial", world, customer, BINARY, config, trial=t) for t in trials]
    assert all(rc == 0 and r["status"] == "ok" for rc, r, _ in done), [x[2] for x in done]
    assert all(r["objective_metric"] == "roc_auc" and r["objective"] > 0.6 for _, r, _ in done)
    client = mlflow.MlflowClient(world[2]["tracking_uri"])
    child = client.get_run(done[0][1]["mlflow_run_id"])
    assert child.data.tags["framework"] == "pytorch"
    assert not client.list_artifacts(child.info.run_id, "model")
