"""What the control plane and the workload share: one definition, imported by both environments.

Pure Python + pydantic (no Airflow, no ML library), so the scheduler (``plugins/`` is on its path)
and every step image (installed from ``plugins/mlplatform_contract/pyproject.toml``) import the same
module: the settings schema the control plane validates at parse time is the one the step parses at
run time, and the task types say the same metrics and directions on both sides.
"""
