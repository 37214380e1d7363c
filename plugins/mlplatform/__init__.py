"""Control plane of the model-workflow platform.

A model module in ``dags/`` describes its pipeline as data; :func:`register_pipeline` validates it and
puts one Airflow DAG per (model, customer) into the module's globals. Nothing here imports an ML
library: the scheduler parses these files every few seconds.
"""

from mlplatform import quiet_logs
from mlplatform.factory import register_pipeline
from mlplatform.spec import PipelineSpecError

quiet_logs.install()  # one "No tasks to run" line a minute while `airflow dags test` waits

__all__ = ["PipelineSpecError", "register_pipeline"]
