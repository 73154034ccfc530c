"""`grpokit launch sagemaker`: run `grpokit train` as an Amazon SageMaker training job.

The job description is built by pure functions, in the order a reader follows it:

1. `plan.read_launch_config`: the YAML file plus `--set` overrides, split into the training config and
   its `sagemaker:` section; `plan.validate_training_config` checks the training config as
   `grpokit train` would.
2. `settings.resolve_settings`: defaults < `sagemaker:` section < command-line flags (the section's
   schema, `SageMakerSettings`, is the config's: `grpokit.config.sagemaker`).
3. `plan.plan_job`: what the job needs: channels (`config`, `train`, `test`, and `model` for a local
   or S3 model), the config the job reads (container paths, no secrets), environment variables
   (secrets go here, never into hyperparameters), requirements, the image.
4. `staging.stage_job_files`: writes the config channel and the code directory (grpokit's own
   source, a generated `requirements.txt` and `grpokit_entry.py`) into a local staging directory.
5. `submit.build_model_trainer` / `submit.training_job_request`: the SDK's `ModelTrainer` and the
   exact CreateTrainingJob request it would send (`--dry-run` prints it; no credentials, no upload).

The thin edge, `submit.submit_job` and `submit.wait_for_job`, uploads and calls AWS. This file imports
nothing.
"""
