"""Workload package: the code that runs inside every step image (and in the local runtime's venv).

The control plane never imports this package at DAG-parse time; it only builds the command line
``python -m model_steps <step> ...`` described in :mod:`model_steps.contract`.
"""

__version__ = "0.1.0"
