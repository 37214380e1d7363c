"""The control plane and the workload never import each other; both import the shared contract
package (plugins/mlplatform_contract), so the step contract has one definition and nothing to keep
equal. What stays to check: the settings the control plane renders parse the same on the workload
side."""


def test_the_workload_parses_what_the_control_plane_validated(monkeypatch) -> None:
    """One settings schema: every example customer's STEP_CONFIG, as the control plane renders it,
    parses on the workload side into the same values (no key dropped, no default that differs)."""
    import runpy
    from pathlib import Path

    import mlplatform
    from mlplatform.spec import parse_pipeline, resolve_customers
    from model_steps.model_loader import parse_platform_settings

    specs: list = []
    monkeypatch.setattr(mlplatform, "register_pipeline", lambda g, spec: specs.append(spec))
    modules = sorted((Path(__file__).resolve().parents[2] / "dags").glob("*.py"))
    for module in modules:
        runpy.run_path(str(module))
    assert len(specs) == len(modules) >= 2
    for spec in specs:
        for customer in resolve_customers(parse_pipeline(spec, "dags/x.py"), "dags/x.py"):
            sent = customer.settings.step_config()
            parsed = parse_platform_settings(sent)
            assert parsed.model_dump(mode="json", exclude={"schedule", "resources"}) == sent
