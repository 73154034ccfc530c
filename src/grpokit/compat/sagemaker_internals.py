"""The only module that touches private parts of the SageMaker Python SDK (checked against sagemaker 3.27.0).

- `offline_session_class()`: a `Session` that names S3 locations without calling S3, for `--dry-run`
  (reads `Session._default_bucket_name_override`);
- `offline_trainer_class()`: a `ModelTrainer` that does not ask IAM about the staging bucket
  (overrides `ModelTrainer._resolve_staging_bucket`);
- `training_job_request_args(trainer)`: the CreateTrainingJob kwargs the trainer would send
  (`ModelTrainer._create_training_job_args`);
- `latest_training_job(trainer)`: the `TrainingJob` that `ModelTrainer.train` created
  (`ModelTrainer._latest_training_job`).

`tests/test_compat.py` checks every one of these against the installed SDK.
"""

from __future__ import annotations

import os
from typing import Any


def offline_session_class():
    """A `sagemaker.core.helper.session_helper.Session` subclass that never touches S3 for bucket or uploads."""
    from sagemaker.core.helper.session_helper import Session

    class OfflineSession(Session):
        """Names S3 locations without touching S3: the dry-run's session."""

        def default_bucket(self):
            return self._default_bucket_name_override  # private in sagemaker 3.27.0 (Session.__init__)

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None, extra_args=None):
            uri = f"s3://{bucket or self.default_bucket()}/{key_prefix}"
            return uri if os.path.isdir(path) else f"{uri}/{os.path.basename(path)}"

    return OfflineSession


def offline_trainer_class():
    """A `ModelTrainer` subclass that takes the session's bucket as the staging bucket without asking IAM."""
    from sagemaker.train import ModelTrainer

    class OfflineModelTrainer(ModelTrainer):
        # The SDK asks IAM whether the role may write the default bucket; a dry run asks nobody.
        def _resolve_staging_bucket(self):  # private in sagemaker 3.27.0 (ModelTrainer)
            return self.sagemaker_session.default_bucket(), None

    return OfflineModelTrainer


def training_job_request_args(trainer: Any) -> dict[str, Any]:
    """The CreateTrainingJob request `trainer.train()` would send, as boto3 kwargs."""
    return trainer._create_training_job_args(boto3=True)  # private in sagemaker 3.27.0 (ModelTrainer)


def latest_training_job(trainer: Any):
    """The `TrainingJob` the last `trainer.train()` created."""
    return trainer._latest_training_job  # private in sagemaker 3.27.0 (set by ModelTrainer.train)
