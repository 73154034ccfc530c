"""The doors to other libraries' private APIs. Nothing else in grpokit touches a private attribute.

- `trl_internals`: TRL's and transformers' (GRPOTrainer's recent-batch buffer, `Trainer._load_from_checkpoint`,
  TRL's config rules checked for another world size);
- `sagemaker_internals`: the SageMaker SDK's (the request builder, the created job, the offline session);
- `tracking_internals`: MLflow's and datasets' (a dataset's MLflow entity, a dataset's fingerprint).

Each access names the version it was checked against, and `tests/test_compat.py` fails loudly when
one disappears, so an upgrade that moves it breaks one test in one place.
"""
