"""`trl grpo` / accelerate-variant configs: TRL's ModelConfig and ScriptArguments keys, dataset_name, the reward model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import TINY_TRAINING
from grpokit.cli import app
from grpokit.config import load_config
from grpokit.errors import ConfigError, DataError
from grpokit.model.builtin import resolve_model_path
from grpokit.model.loading import lora_config
from grpokit.pipeline import build_reward_set, load_run_data
from grpokit.trainer import train

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_EXAMPLE = ROOT / "examples" / "aws_sample" / "accelerate"
ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(10, 42), range(50, 82))]
# A `trl grpo` config training builtin:tiny in seconds
TRL_TRAINING = {
    "model_name_or_path": "builtin:tiny",
    **{key: value for key, value in TINY_TRAINING.items() if key not in ("model_id", "rewards")},
}


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory) -> Path:
    """A DatasetDict (train, test) written with save_to_disk."""
    import datasets

    directory = tmp_path_factory.mktemp("saved") / "addition"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "test": datasets.Dataset.from_list(ROWS[:8])}
    ).save_to_disk(str(directory))
    return directory


def load(data: dict, **kwargs):
    kwargs.setdefault("cuda_available", False)
    return load_config(data=data, **kwargs)


# ----------------------------------------------------------------------------- ModelConfig keys


def test_model_config_keys_map_onto_grpokit_options(saved_dataset):
    config = load({
        **TRL_TRAINING, "dataset_name": str(saved_dataset), "use_peft": True, "lora_r": 4, "lora_alpha": 8,
        "use_rslora": True, "use_dora": True, "lora_modules_to_save": ["lm_head"], "lora_target_modules": ["q_proj", "v_proj"],
        "torch_dtype": "bfloat16", "model_revision": "v1", "lora_task_type": "CAUSAL_LM",
    })  # fmt: skip
    options = config.options
    assert options.model_id == "builtin:tiny" and options.revision == "v1"
    assert options.use_lora and (options.lora_r, options.lora_alpha) == (4, 8)
    assert options.dtype == "float32"  # bfloat16 asked; a CPU trains in float32 (with a warning)
    lora = lora_config(options)
    assert lora.use_rslora and lora.use_dora and lora.modules_to_save == ["lm_head"]
    assert set(lora.target_modules) == {"q_proj", "v_proj"}


def test_a_trl_grpo_config_takes_trl_model_config_defaults(saved_dataset):
    options = load({**TRL_TRAINING, "dataset_name": str(saved_dataset)}).options
    from trl import ModelConfig

    defaults = ModelConfig()
    assert options.use_lora is defaults.use_peft is False  # trl grpo trains all weights unless use_peft
    assert (options.lora_r, options.lora_alpha, options.lora_dropout) == (defaults.lora_r, defaults.lora_alpha, defaults.lora_dropout)
    assert options.dtype == defaults.dtype == "float32"
    with_peft = load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "use_peft": True}).options
    assert with_peft.lora_target_modules is None and lora_config(with_peft).target_modules is None  # PEFT picks, as trl grpo


def test_8_bit_loading_is_an_option_kept_on_a_cpu(saved_dataset, caplog):
    caplog.set_level(logging.WARNING, logger="grpokit.config")
    config = load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "use_peft": True, "load_in_8bit": True})
    assert config.options.load_in_8bit is True, "bitsandbytes' CPU backend trains it (tests/test_qlora.py)"
    assert "load_in_8bit" not in caplog.text
    assert load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "load_in_8bit": True}, cuda_available=True,
                world_size=1).options.load_in_8bit is True  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"load_in_4bit": True, "load_in_8bit": True}, "TRL's ModelConfig rejected these keys: You can't use 8 bit and 4 bit"),
        ({"use_peft": "sometimes"}, "'use_peft' has the wrong type: got 'sometimes', TRL's ModelConfig expects"),
        ({"lora_task_type": "SEQ_CLS"}, "'lora_task_type: 'SEQ_CLS'' cannot be honoured: grpokit trains causal LMs"),
        ({"bnb_4bit_quant_type": "fp4"}, "cannot be honoured: grpokit's 4-bit loading is NF4"),
        ({"dataset_streaming": True}, "cannot be honoured: grpokit reads the dataset into memory"),
        ({"model_id": "builtin:other"}, "'model_name_or_path' (TRL's name) and 'model_id' (grpokit's) are both set"),
        ({"train_dataset_path": "data.jsonl"}, "both train_dataset_path and dataset_name are set"),
    ],
)
def test_trl_keys_are_validated_by_trls_classes_and_refused_by_name(saved_dataset, extra, message):
    with pytest.raises(ConfigError) as error:
        load({**TRL_TRAINING, "dataset_name": str(saved_dataset), **extra})
    assert message in error.value.message


def test_a_misspelt_trl_key_suggests_the_trl_key(saved_dataset):
    with pytest.raises(ConfigError, match="unknown config key 'use_pef'") as error:
        load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "use_pef": True})
    assert error.value.fix == "did you mean 'use_peft'?"


# ----------------------------------------------------------------------------- dataset_name: datasets.load_dataset


def test_dataset_name_loads_a_save_to_disk_folder_with_its_splits(saved_dataset):
    config = load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "rewards": ["length"]})
    data = load_run_data(config, build_reward_set(config))
    assert (len(data.train), len(data.test)) == (32, 8)
    assert data.train[0]["prompt"] == "10+50=" and data.train[0]["answer"] == "60"
    assert "rows from load_dataset" in data.description


def test_a_config_without_training_data_is_one_clear_error():
    with pytest.raises(ConfigError) as error:
        load({"model_id": "builtin:tiny"})
    assert error.value.what == (
        "no training data: set train_dataset_path (a local file or directory), load_dataset (TRL: dataset_name) "
        "or dataset_mixture (TRL: datasets); or an environment: that makes its own tasks"
    )


def test_dataset_name_loads_a_local_folder_of_data_files(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    config = load({**TRL_TRAINING, "dataset_name": str(folder), "rewards": ["length"]})
    data = load_run_data(config, build_reward_set(config))
    assert len(data.train) == 32 and data.test is None  # no test split in the folder: none, as trl grpo without eval


def test_a_missing_split_names_the_splits_the_dataset_has(saved_dataset):
    config = load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "dataset_train_split": "training", "rewards": ["length"]})
    with pytest.raises(DataError, match=r"has no split 'training' \(splits: train, test\)"):
        load_run_data(config, build_reward_set(config))


def test_a_dataset_that_cannot_be_found_is_one_clear_error(tmp_path):
    config = load({**TRL_TRAINING, "dataset_name": "no-such-org/no-such-dataset", "rewards": ["length"]})
    with pytest.raises(DataError, match="load_dataset: could not load 'no-such-org/no-such-dataset'"):
        load_run_data(config, build_reward_set(config))


# ----------------------------------------------------------------------------- rewards


def test_the_reward_model_alone_scores_when_no_rewards_are_listed(saved_dataset, tiny_reward_model, tiny_config):
    alone = load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "reward_model_name_or_path": str(tiny_reward_model)})
    assert build_reward_set(alone).names == ["reward_model"]  # grpo_advanced.py / trl grpo
    listed = load_config(data={**tiny_config, "reward_model_name_or_path": str(tiny_reward_model)})
    assert build_reward_set(listed).names == ["rouge_l", "length", "reward_model"]  # with rewards: it is added


def test_reward_funcs_map_onto_the_same_rewards_in_trls_order_with_their_weights(saved_dataset, tiny_reward_model):
    config = load({
        **TRL_TRAINING, "dataset_name": str(saved_dataset), "reward_model_name_or_path": str(tiny_reward_model),
        "reward_funcs": ["think_format_reward", "get_soft_overlong_punishment"], "reward_weights": [0.5, 1.0, 2.0],
    })  # fmt: skip
    reward_set = build_reward_set(config)
    assert reward_set.names == ["reward_model", "think_format_reward", "overlong_penalty"]
    assert reward_set.weights == [0.5, 1.0, 2.0]
    assert "reward_weights" not in config.trl_args
    think = reward_set.funcs[1].reward
    assert think(prompts=["Q"] * 2, completions=[[{"role": "assistant", "content": "<think>x</think>y"}], [{"role": "assistant", "content": "y"}]]) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="reward_funcs: 'accuracy' is neither one of trl grpo's rewards"):
        load({**TRL_TRAINING, "dataset_name": str(saved_dataset), "reward_funcs": ["accuracy"]})


# ----------------------------------------------------------------------------- the accelerate variant, end to end


def accelerate_variant_config(tmp_path: Path, saved_dataset: Path, tiny_reward_model: Path) -> Path:
    """grpo_advanced.yaml with the model, data and reward model changed to local ones, under the sample's accelerate file."""
    config = yaml.safe_load((ACCELERATE_EXAMPLE / "grpo_advanced.yaml").read_text())
    config.pop("report_to")
    config.update(TRL_TRAINING)
    config.update(
        dataset_name=str(saved_dataset),
        reward_model_name_or_path=str(tiny_reward_model),
        output_dir=str(tmp_path / "out"),
        distributed=str(ACCELERATE_EXAMPLE / "default_config.yaml"),
    )
    path = tmp_path / "grpo_advanced.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_the_accelerate_variant_config_trains_2_steps_scored_by_the_reward_model_alone(
    tmp_path, saved_dataset, tiny_reward_model, caplog
):
    caplog.set_level(logging.WARNING, logger="grpokit")
    config = load_config(accelerate_variant_config(tmp_path, saved_dataset, tiny_reward_model))
    assert "mixed_precision: 'fp16' -> 'no' (needs a CUDA GPU; training in float32 instead)" in caplog.text
    result = train(config)
    out = tmp_path / "out"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert result.global_step == 2 and [line["step"] for line in lines] == [1, 2]
    assert "rewards/reward_model/mean" in lines[0] and not any(k.startswith("rewards/rouge_l") for k in lines[0])
    trained = load_file(str(out / "model.safetensors"))  # use_peft unset: trl grpo trains all weights
    base = load_file(str(Path(resolve_model_path("builtin:tiny")) / "model.safetensors"))
    assert any(not torch.equal(base[key], trained[key]) for key in base)


def test_convert_writes_the_accelerate_variant_explicitly(tmp_path, saved_dataset, tiny_reward_model):
    source = accelerate_variant_config(tmp_path, saved_dataset, tiny_reward_model)
    raw = yaml.safe_load(source.read_text())
    accelerate_file = Path(raw.pop("distributed"))
    source.write_text(yaml.safe_dump(raw))
    output = tmp_path / "converted" / "grpokit.yaml"
    result = CliRunner().invoke(
        app, ["convert", "aws-accelerate", str(source), "-o", str(output), "--accelerate-config", str(accelerate_file)]
    )
    assert result.exit_code == 0, result.output
    converted = yaml.safe_load(output.read_text())
    assert converted["trl_defaults"] == "0.16.1" and converted["model_id"] == "builtin:tiny"
    assert converted["use_lora"] is False and converted["lora_r"] == 16 and converted["dtype"] == "float32"
    assert converted["load_dataset"] == {"path": str(saved_dataset)}
    assert converted["rewards"] == [{"name": "reward_model", "model_name_or_path": str(tiny_reward_model)}]
    assert (output.parent / converted["distributed"]).resolve() == accelerate_file.resolve()
    assert "grpo_advanced.py scored with the reward model alone" in result.output
    config = load_config(output, cuda_available=False)
    assert config.grpo_config.beta == 0.04 and config.grpo_config.loss_type == "bnpo"  # TRL 0.16.1
    assert build_reward_set(config).names == ["reward_model"]
