"""The only module that touches private parts of MLflow and datasets (checked against mlflow 3.17.2, datasets 5.2.0).

- `mlflow_dataset_entity(dataset)`: the `mlflow.entities.Dataset` of an MLflow dataset, which
  `MlflowClient.log_inputs` takes (`mlflow.data.Dataset._to_mlflow_entity`; the fluent
  `mlflow.log_input` would need a global active run);
- `dataset_fingerprint(dataset)`: a `datasets.Dataset`'s fingerprint (`Dataset._fingerprint`), which
  identifies its content in a tracker's config.
"""

from __future__ import annotations

from typing import Any


def mlflow_dataset_entity(dataset: Any):
    """The entity `MlflowClient.log_inputs` records for an `mlflow.data` dataset."""
    return dataset._to_mlflow_entity()  # private in mlflow 3.17.2 (mlflow.data.dataset.Dataset)


def dataset_fingerprint(dataset: Any) -> str | None:
    """The fingerprint `datasets` computed for a dataset, or None for another kind of table."""
    return getattr(dataset, "_fingerprint", None)  # private in datasets 5.2.0 (Dataset)
