"""The example models end to end through Airflow and the local runtime, on tiny data and the embedded
services: every task of each DAG (the factory's own LocalStepOperators, the model's extra step
included) runs ``python -m model_steps <step>`` in the workload venv. Each model trains its own
label: the training tables' columns and the registered models' MLflow signatures differ as their
packages declare, and the CRM holds each model's own records. The third, preferred_channel, is
another library and task: a LightGBM booster over several classes, logged in LightGBM's text
format, scored with a probability column per class.

The run is the session's shared one (tests/two_models.py, fixture ``two_models``): the DAGs through
``airflow dags test``, read back from their metadata DBs."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import textwrap
import urllib.request
from pathlib import Path

import pytest

from mlplatform.runtime.local import steps_venv

STEPS_PY = steps_venv() / "bin" / "python"
pytestmark = pytest.mark.slow
# preferred_channel's classes (mlmodels.preferred_channel.features.CLASSES: the control plane's venv
# does not import model packages)
CHANNEL_CLASSES = ("dine_in", "takeaway", "delivery", "app", "none")


@pytest.fixture(scope="module")
def results(two_models) -> dict[str, dict[str, dict]]:
    """Every task's XCom result of each model's DAG run."""
    return {model: two_models.results(model) for model in two_models.runs}


def _manifest(result: dict) -> dict:
    path = Path(result["manifest_uri"].removeprefix("file://"))
    return json.loads(path.read_text())


def test_each_model_trains_its_own_label_on_its_own_features(results) -> None:
    propensity, spend = results["customer_propensity"], results["next_spend"]
    p_schema = _manifest(propensity["ingest"])["schema"]
    s_schema = _manifest(spend["ingest"])["schema"]
    assert p_schema["label"] == "int" and "spend_next" not in p_schema
    assert s_schema["spend_next"] == "double" and "label" not in s_schema
    assert "open_rate" in p_schema and "open_rate" not in s_schema  # email features: one model
    assert "spend_prev_28d" in s_schema and "spend_prev_28d" not in p_schema
    assert propensity["train"]["task"] == "binary_classification"
    assert set(propensity["train"]["metrics"]) >= {"roc_auc", "brier"}
    assert spend["train"]["task"] == "regression"
    assert set(spend["train"]["metrics"]) >= {"rmse", "mae", "r2"}
    assert spend["evaluate"]["promote"] and propensity["evaluate"]["promote"]


def test_the_registered_models_signatures_differ_as_declared(results, two_models) -> None:
    script = textwrap.dedent("""
        import json, sys, mlflow
        info = mlflow.models.get_model_info(sys.argv[1])
        print(json.dumps({"inputs": info.signature.inputs.input_names(),
                          "outputs": info.signature.outputs.input_names()}))
    """)
    signatures = {}
    for name, result in results.items():
        proc = subprocess.run([str(STEPS_PY), "-c", script, result["evaluate"]["scoring_model_uri"]],
                              env={**two_models.env, **two_models.registry_admin, "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, check=True)  # fmt: skip
        signatures[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    propensity, spend = signatures["customer_propensity"], signatures["next_spend"]
    assert propensity["outputs"] == ["score"] and spend["outputs"] == ["prediction"]
    channel = signatures["preferred_channel"]
    assert channel["outputs"] == [*(f"score_{c}" for c in CHANNEL_CLASSES), "predicted_class"]
    assert "last_channel" in channel["inputs"] and "last_channel" not in spend["inputs"]
    assert "click_rate" in propensity["inputs"] and "click_rate" not in spend["inputs"]
    assert (
        "favourite_channel" in spend["inputs"] and "favourite_channel" not in propensity["inputs"]
    )


def test_the_crm_holds_each_models_own_records_and_the_extra_step_reported(results, two_models):
    request = urllib.request.Request(f"{two_models.crm}/v1/contacts?limit=10000",
                                     headers={"Authorization": f"Bearer {two_models.crm_token}"})  # fmt: skip
    records = json.loads(urllib.request.urlopen(request, timeout=10).read())["records"]
    by_model: dict[str, list[dict]] = {}
    for record in records:
        by_model.setdefault(record["model"], []).append(record)
    assert (
        len(by_model["customer_propensity"]) == results["customer_propensity"]["publish"]["records"]
    )
    assert len(by_model.get("next_spend", [])) == results["next_spend"]["publish"]["records"]
    # the third model selected diners; arbitration (below) decides how many it may reach today
    channel = by_model.get("preferred_channel", [])
    assert len(channel) == results["preferred_channel"]["publish"]["records"]
    assert results["preferred_channel"]["publish"]["selected"] > 0
    assert {r["preferred_channel"] for r in channel} <= set(CHANNEL_CLASSES[:-1])
    assert all(r["segment"] == "preferred-channel" and 0 < r["order_probability"] <= 1
               for r in channel)  # fmt: skip
    assert {"offer_code", "propensity_score"} <= set(by_model["customer_propensity"][0])
    assert all(r["segment"] == "vip" and "expected_spend_28d" in r for r in by_model["next_spend"])
    # the DAGs published for the same customer and day side by side: one arbitration (cap 1 a
    # day, docs/campaigns.md) gave each diner to at most one of them, and each lost the rest
    contacted = {m: {r["contact_id"] for r in by_model.get(m, [])} for m in results}
    for first, second in itertools.combinations(contacted, 2):
        assert not contacted[first] & contacted[second], (first, second)
    for model in results:
        publish = results[model]["publish"]
        assert publish["selected"] - publish["owned"] == publish["lost"] >= 0
        assert sum(publish["arms"].values()) == publish["owned"]
    report = results["next_spend"]["spend_report"]
    _assert_variants(results["customer_propensity"]["publish"], by_model["customer_propensity"])
    assert report["diners"] == results["next_spend"]["score"]["rows"]
    assert Path(report["report_uri"].removeprefix("file://")).read_text().startswith("<!doctype")


def _assert_variants(publish: dict, records: list[dict]) -> None:
    """The declared campaign (tests/two_models.py CAMPAIGN): each treated diner got a live variant
    drawn per segment, committed with the shares before the batches, and its fields reached the CRM."""
    from two_models import CAMPAIGN

    path = Path(publish["campaign_uri"].removeprefix("file://")) / "_MANIFEST.json"
    manifest = json.loads(path.read_text())
    assert manifest["campaign"] == "spring-offers" and manifest["policy_version"] == "prior"
    assert manifest["variants"] == ["pct10", "pct20", "dessert"]  # the retired one gets no traffic
    assert len(manifest["shares"]) > 1  # the population's segments
    for shares in manifest["shares"].values():
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    fields = {v["id"]: v["crm"] for v in CAMPAIGN["variants"]}
    for record in records:
        assert record["variant"] in manifest["variants"]
        assert all(record[k] == v for k, v in fields[record["variant"]].items())


# what the workload venv reads for the next test: the candidate's run (framework, format) and the
# committed scores table, through its manifest as publish reads it
READ_RUN_AND_SCORES = textwrap.dedent("""
    import json, sys, mlflow, s3fs, pyarrow.parquet as pq
    run = mlflow.MlflowClient().get_run(sys.argv[1])
    root = sys.argv[2].removeprefix("s3://").rstrip("/")
    fs = s3fs.S3FileSystem()
    manifest = json.loads(fs.cat_file(f"{root}/_MANIFEST.json"))
    rows = []
    for part in manifest["files"]:
        with fs.open(f"{root}/{manifest['attempt']}/{part}", "rb") as fh:
            rows.extend(pq.read_table(fh).to_pylist())
    print(json.dumps({"tags": run.data.tags, "rows": rows}))
""")


def test_the_lightgbm_model_trains_several_classes_and_scores_a_column_per_class(
    results, two_models
) -> None:
    channel = results["preferred_channel"]
    schema = _manifest(channel["ingest"])["schema"]
    assert schema["next_channel"] == "int" and "orders_app" in schema
    train = channel["train"]
    assert train["task"] == "multiclass_classification" and train["ranks"] == 1
    assert train["epochs_run"] == 0 and train["checkpoint_uri"] == ""  # one fit, no epochs
    metrics = train["metrics"]
    assert metrics["classes"] == len(CHANNEL_CLASSES) and metrics["log_loss"] < math.log(5)
    assert metrics["macro_f1"] > 0.2 and channel["evaluate"]["promote"]
    proc = subprocess.run(
        [str(STEPS_PY), "-c", READ_RUN_AND_SCORES, train["mlflow_run_id"],
         channel["score"]["output_uri"]],
        env={**two_models.env, **two_models.registry_admin, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["tags"]["framework"] == "lightgbm"
    rows = found["rows"]
    assert len(rows) == channel["score"]["rows"] > 0
    assert set(rows[0]) == {"diner_id", *(f"score_{c}" for c in CHANNEL_CLASSES),
                            "predicted_class", "model_version"}  # fmt: skip
    assert all(abs(sum(r[f"score_{c}"] for c in CHANNEL_CLASSES) - 1) < 1e-6 for r in rows)
    assert {r["predicted_class"] for r in rows} <= set(CHANNEL_CLASSES)
