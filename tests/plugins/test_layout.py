"""The lake layout (mlplatform_contract.layout) names the paths the steps have always used: the
workload tests check the same paths from the outside (tests/images/steps/test_chain_cli.py…)."""

from __future__ import annotations

from mlplatform_contract.layout import RUN_ZONES, CustomerLayout

LAKE = "s3://lake-bucket/prefix/"
RUN = "manual__2026-06-29-1a2b3c4d"


def test_run_paths_are_zone_pipeline_customer_run() -> None:
    run = CustomerLayout(LAKE, "churn", "acme-foods").run(RUN)
    where = "churn/customer=acme-foods/run=manual__2026-06-29-1a2b3c4d"
    assert run.features == f"s3://lake-bucket/prefix/features/{where}"
    assert run.population == f"s3://lake-bucket/prefix/population/{where}"
    assert run.manifest("features") == f"s3://lake-bucket/prefix/features/{where}/_MANIFEST.json"
    assert run.train_result == f"s3://lake-bucket/prefix/models/{where}/train_result.json"
    assert run.trial_models("trial-01") == f"s3://lake-bucket/prefix/models/{where}/trials/trial-01"
    assert run.decision == f"s3://lake-bucket/prefix/evaluation/{where}/decision.json"
    assert run.tuning("plan.json") == f"s3://lake-bucket/prefix/tuning/{where}/plan.json"
    assert run.publish("progress.json") == f"s3://lake-bucket/prefix/publish/{where}/progress.json"
    assert run.scores == f"s3://lake-bucket/prefix/scores/{where}"
    assert {run.path(z).split("/")[4] for z in RUN_ZONES} == set(RUN_ZONES)


def test_scores_root_customer_zones_and_raw_drops() -> None:
    customer = CustomerLayout(LAKE, "churn", "acme-foods", scores_uri="s3://scores-bucket")
    assert customer.run(RUN).scores == f"s3://scores-bucket/churn/customer=acme-foods/run={RUN}"
    assert customer.champion_profile == (
        "s3://lake-bucket/prefix/evaluation/churn/customer=acme-foods/champion/feature_profile.json"
    )
    assert customer.baseline_profile.endswith(
        "reference/churn/customer=acme-foods/feature_profile.json"
    )
    assert customer.last_population_profile.endswith("customer=acme-foods/population_profile.json")
    assert customer.monitoring_report.endswith("monitoring/churn/customer=acme-foods/report")
    assert customer.raw_table("orders") == "s3://lake-bucket/prefix/raw/customer=acme-foods/orders"
