"""Every private attribute grpokit reaches in another library still exists in the installed version.

`grpokit.compat` is the only place that touches TRL's, transformers', the SageMaker SDK's, MLflow's
and datasets' private parts. When an upgrade moves one, the matching test here fails with the name of
the attribute, instead of a training run failing somewhere later.
"""

from __future__ import annotations

import inspect

import pytest

from grpokit.compat import trl_internals
from grpokit.compat.tracking_internals import dataset_fingerprint, mlflow_dataset_entity

# ----------------------------------------------------------------------------- TRL and transformers


@pytest.fixture(scope="module")
def tiny_trainer(tmp_path_factory):
    """A real GRPOTrainer on the built-in tiny model (built, never trained)."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from grpokit.model.builtin import resolve_model_path

    path = resolve_model_path("builtin:tiny")
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("compat")), use_cpu=True, bf16=False, per_device_train_batch_size=2,
        num_generations=2, max_completion_length=2, report_to="none",
    )  # fmt: skip
    return GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": ["1+1=", "2+2="]}),
        processing_class=AutoTokenizer.from_pretrained(path),
    )


def test_grpo_trainer_keeps_its_recent_generation_batch(tiny_trainer):
    batch = trl_internals.recent_generation_batch(tiny_trainer)
    assert batch is not None, "GRPOTrainer._logs is gone: update grpokit.compat.trl_internals"
    missing = set(trl_internals.RECENT_BATCH_KEYS) - set(tiny_trainer._logs)
    assert not missing, f"GRPOTrainer._logs no longer holds {missing}: update grpokit.compat.trl_internals"
    assert batch.prompts == [] and batch.completions == [] and batch.advantages == []


def test_a_trainer_without_the_buffer_gives_no_batch():
    assert trl_internals.recent_generation_batch(object()) is None


def test_trainer_can_load_a_checkpoints_weights():
    from transformers import Trainer

    parameters = inspect.signature(Trainer._load_from_checkpoint).parameters
    assert list(parameters)[:2] == ["self", "resume_from_checkpoint"]


def test_training_arguments_still_set_up_devices_where_the_rules_check_expects():
    from transformers import TrainingArguments

    assert isinstance(inspect.getattr_static(TrainingArguments, "world_size"), property)
    assert hasattr(TrainingArguments, "_setup_devices")
    assert "_n_gpu" in inspect.getsource(TrainingArguments.n_gpu.fget)


def test_rules_check_runs_trls_rules_for_another_world_without_touching_devices():
    from accelerate.state import PartialState

    before = dict(PartialState._shared_state)
    check = trl_internals.grpo_rules_check(
        {"per_device_train_batch_size": 2, "num_generations": 4}, world_size=2, output_dir="unused"
    )
    assert check.error is None and check.resolved["generation_batch_size"] == 4  # 2 x 1 x 2 processes
    rejected = trl_internals.grpo_rules_check(
        {"per_device_train_batch_size": 2, "num_generations": 4}, world_size=1, output_dir="unused"
    )
    assert "divisible by num_generations" in rejected.error and rejected.resolved["generation_batch_size"] == 2
    assert dict(PartialState._shared_state) == before  # no process group, no device chosen


def test_rules_check_reports_fields_as_trl_resolved_them():
    # value_rules accepts `scale_rewards: false` because TRL itself turns it into "none"
    check = trl_internals.grpo_rules_check({"scale_rewards": False}, world_size=1, output_dir="unused", fields=("scale_rewards",))
    assert check.error is None and check.resolved["scale_rewards"] == "none"


# ----------------------------------------------------------------------------- SageMaker SDK


def test_sagemaker_sdk_private_parts_used_by_the_dry_run_and_submit():
    pytest.importorskip("sagemaker.train")
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.train import ModelTrainer

    assert "_default_bucket_name_override" in inspect.getsource(Session.__init__)
    assert callable(ModelTrainer._resolve_staging_bucket)
    assert "boto3" in inspect.signature(ModelTrainer._create_training_job_args).parameters
    assert "self._latest_training_job" in inspect.getsource(ModelTrainer.train)


# ----------------------------------------------------------------------------- MLflow and datasets


def test_mlflow_dataset_entity_and_dataset_fingerprint():
    import datasets
    from mlflow.data.huggingface_dataset import from_huggingface

    table = datasets.Dataset.from_dict({"prompt": ["a", "b"]})
    fingerprint = dataset_fingerprint(table)
    assert isinstance(fingerprint, str) and fingerprint
    entity = mlflow_dataset_entity(from_huggingface(table, name="train"))
    assert entity.name == "train" and entity.digest


# ----------------------------------------------------------------------------- dynamic sampling (TRL 1.16.0)

# Tensors GRPOTrainer returns only for image inputs, which dynamic sampling refuses.
MULTIMODAL_OUTPUTS = {
    "pixel_values", "image_grid_thw", "pixel_attention_mask", "spatial_shapes", "image_sizes", "token_type_ids",
    "mm_token_type_ids", "image_position_ids", "num_images", "num_tiles",
}  # fmt: skip


def test_grpo_trainer_still_generates_and_scores_through_the_methods_dynamic_sampling_wraps():
    import re

    from trl import GRPOTrainer

    from grpokit.trainer.dynamic_sampling.rounds import LEFT_PADDED, RECOUNTED, RIGHT_PADDED

    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert "self._generate_and_score_completions(" in inspect.getsource(GRPOTrainer._prepare_inputs)
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "rewards_per_func = self._calculate_rewards(" in source, "the gathered rewards no longer come from here"
    literal = re.search(r"output = \{(.*?)\n        \}", source, flags=re.DOTALL)
    returned = set(re.findall(r'"(\w+)":', literal.group(1))) | set(re.findall(r'output\["(\w+)"\] =', source))
    unknown = returned - set(LEFT_PADDED) - set(RIGHT_PADDED) - set(RECOUNTED) - MULTIMODAL_OUTPUTS
    assert {"prompt_ids", "completion_mask", "advantages", "num_items_in_batch"} <= returned
    assert unknown == set(), f"GRPOTrainer returns tensors dynamic sampling cannot join: {unknown}"


class _ScoresOnce:
    """Stands in for GRPOTrainer: its generate-and-score step computes the rewards once, on the way."""

    model = type("Model", (), {"training": True})()
    reward_calls = 1

    def _calculate_rewards(self, rows):
        return [float(len(row)) for row in rows]

    def _generate_and_score_completions(self, rows):
        for _ in range(self.reward_calls):
            self._calculate_rewards(rows)
        return {"rows": rows}


class _OneRound(trl_internals.GenerationRoundHooks, _ScoresOnce):
    def informative_generation_batch(self, inputs, generate_round):
        return generate_round(inputs)


def test_a_generation_round_returns_its_batch_and_its_rewards_together():
    assert "informative_generation_batch" in vars(trl_internals.GenerationRoundHooks), "the base declares the hook"
    generated = _OneRound()._generate_and_score_completions(["a", "bb"])
    assert generated == trl_internals.GenerationRound(batch={"rows": ["a", "bb"]}, rewards=[1.0, 2.0])


def test_a_round_scored_another_way_than_trl_1_16_is_one_clear_error():
    from grpokit.errors import RunError

    unscored = _OneRound()
    unscored.reward_calls = 0
    with pytest.raises(RunError, match="0 reward computations"):
        unscored._generate_and_score_completions(["a"])
    with pytest.raises(NotImplementedError, match="informative_generation_batch"):
        type("NoHook", (trl_internals.GenerationRoundHooks, _ScoresOnce), {})()._generate_and_score_completions(["a"])


def test_calculate_rewards_returns_one_row_per_completion_and_one_column_per_reward(tiny_trainer):
    rewards = tiny_trainer._calculate_rewards(
        [{"prompt": "1+1="}, {"prompt": "2+2="}], ["1+1=", "2+2="], ["2", "4"], [[50], [52]]
    )
    assert tuple(rewards.shape) == (2, 1)  # [completions of every process, reward functions]
