"""Step bodies: one module per step kind, each exposing ``run(ctx: StepContext) -> dict``.

Modules import their heavy libraries themselves, so an image only needs the extra of its own step.
"""
