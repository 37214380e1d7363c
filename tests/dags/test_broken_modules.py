"""A broken model module, or a broken or missing model package, shows as an import error on that
DAG file only; every other DAG still loads."""

from __future__ import annotations

import textwrap

import pytest

TRAINING_DAG_IDS = {
    "customer_propensity__acme-foods",
    "customer_propensity__bella-pasta",
    "customer_propensity__casa-tacos",
    "next_spend__acme-foods",
    "next_spend__bella-pasta",
    "preferred_channel__acme-foods",
    "preferred_channel__bella-pasta",
}
# each customer's monitoring DAG beside its training DAG
GOOD_DAG_IDS = TRAINING_DAG_IDS | {f"{d}__monitor" for d in TRAINING_DAG_IDS}


def module(spec_literal: str) -> str:
    return textwrap.dedent(
        '''
        """Airflow DAG module for a model."""
        from mlplatform import register_pipeline

        register_pipeline(globals(), {spec})
        '''
    ).format(spec=spec_literal)


def spec(
    customers: str = '[{"id": "good-co", "tier": "t"}]',
    steps: str = '{"ingest": {}}',
    model: str = "mlmodels.next_spend",
) -> str:
    return (
        f'{{"name": "other_model", "model": "{model}", "task": "regression", '
        '"owner": "team-a", "description": "d", '
        f'"steps": {steps}, "tiers": {{"t": {{}}}}, "customers": {customers}}}'
    )


CASES = {
    "syntax_error.py": (
        '"""Airflow DAG."""\nfrom mlplatform import register_pipeline\nx = (\n',
        "SyntaxError",
    ),
    "bad_customer.py": (
        module(spec(customers='[{"id": "Bad Customer!", "tier": "t"}]')),
        "customers[0] (Bad Customer!).id: customer id 'Bad Customer!' is not allowed",
    ),
    "negative_memory.py": (
        module(spec(steps='{"ingest": {"memory": "-2Gi"}}')),
        "steps.ingest.memory: '-2Gi' is not a positive Kubernetes quantity",
    ),
    "unknown_step.py": (
        module(spec(steps='{"ingest": {}, "deploy": {}}')),
        "steps.deploy",
    ),
    "missing_model_package.py": (
        module(spec(model="mlmodels.nowhere")),
        "model: model 'mlmodels.nowhere': no package mlmodels.nowhere in",
    ),
    "broken_model_package.py": (
        module(spec(model="mlmodels.broken")),
        "model 'mlmodels.broken' does not compile:",
    ),
}


@pytest.fixture(autouse=True)
def models_with_a_broken_one(tmp_path, monkeypatch):
    """The project's model packages plus ``mlmodels.broken``, whose features module has a
    syntax error (what a half-saved edit looks like)."""
    from conftest import REPO

    root = tmp_path / "models"
    root.mkdir()
    for dist in (REPO / "models").iterdir():
        if dist.is_dir():
            (root / dist.name).symlink_to(dist)
    package = root / "broken" / "mlmodels" / "broken"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from mlmodels.broken.features import features\n")
    (package / "features.py").write_text("def features(frames, ctx:\n    return frames\n")
    monkeypatch.setenv("MLOPS_MODELS_PATH", str(root))


@pytest.mark.parametrize("filename", sorted(CASES))
def test_only_the_broken_file_errors(filename: str, dags_folder, dagbag) -> None:
    text, expected = CASES[filename]
    bag = dagbag(dags_folder({filename: text}))
    ((path, error),) = bag.import_errors.items()
    assert path.endswith(filename)
    assert expected in error
    if filename != "syntax_error.py":
        assert f"dags/{filename}" in error or filename in error
    assert set(bag.dag_ids) == GOOD_DAG_IDS


def test_all_broken_modules_together_leave_good_ones_working(dags_folder, dagbag) -> None:
    bag = dagbag(dags_folder({name: text for name, (text, _) in CASES.items()}))
    assert len(bag.import_errors) == len(CASES)
    assert set(bag.dag_ids) == GOOD_DAG_IDS


def test_a_valid_second_model_adds_its_dags(dags_folder, dagbag) -> None:
    bag = dagbag(dags_folder({"other_model.py": module(spec())}))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == GOOD_DAG_IDS | {"other_model__good-co"}
