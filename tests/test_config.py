"""Config: precedence, unknown keys, types, the AWS sample's args.yaml, CPU fallbacks, secrets, batch maths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from grpokit.config import check_batch_arithmetic, load_config
from grpokit.errors import ConfigError
from grpokit.outputs.saving import save_resolved_config
from grpokit.secrets import mask_secrets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_precedence_defaults_then_file_then_set(tmp_path, tiny_config):
    path = write_config(tmp_path, {**tiny_config, "lora_r": 4, "learning_rate": 1e-4})
    assert load_config(path).options.lora_r == 4
    config = load_config(path, ["lora_r=2", "learning_rate=3e-5"])
    assert config.options.lora_r == 2
    assert config.trl_args["learning_rate"] == pytest.approx(3e-5)
    assert config.options.lora_alpha == 16  # untouched default
    assert config.grpo_config.learning_rate == pytest.approx(3e-5)


def test_set_reaches_nested_sections(tmp_path, tiny_config):
    config = load_config(write_config(tmp_path, tiny_config), ["dataset.prompt_column=question"])
    assert config.options.dataset.prompt_column == "question"


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("learning_rat", "learning_rate"), ("lora_alpah", "lora_alpha"), ("merge_weight", "merge_weights")],
)
def test_unknown_key_names_key_file_and_closest(tmp_path, tiny_config, key, suggestion):
    path = write_config(tmp_path, {**tiny_config, key: 1})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.message
    assert f"'{key}'" in message and str(path) in message and f"'{suggestion}'" in message


def test_unknown_nested_key_suggests_dotted_name(tmp_path, tiny_config):
    path = write_config(tmp_path, {**tiny_config, "dataset": {"promt_column": "q"}})
    with pytest.raises(ConfigError, match=r"dataset\.promt_column.*\n.*\n.*dataset\.prompt_column"):
        load_config(path)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [("learning_rate", "fast", "float"), ("max_steps", "ten", "int"), ("lora_r", "big", "lora_r")],
)
def test_wrong_type_names_key_and_type(tmp_path, tiny_config, key, value, expected):
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, {**tiny_config, key: value}))
    assert key in caught.value.message and expected in caught.value.message


def test_missing_required_key(tmp_path, tiny_config):
    del tiny_config["model_id"]
    with pytest.raises(ConfigError, match="'model_id' is missing"):
        load_config(write_config(tmp_path, tiny_config))


def test_missing_config_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_id: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_trl_rejection_becomes_config_error(tmp_path, tiny_config):
    with pytest.raises(ConfigError, match="TRL rejected"):
        load_config(write_config(tmp_path, {**tiny_config, "lr_scheduler_type": "not-a-scheduler"}))


def test_aws_sample_args_yaml_is_accepted_unchanged_on_cpu():
    config = load_config(EXAMPLES / "aws_sample" / "args.yaml", cuda_available=False)
    options = config.options
    assert options.model_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (options.lora_r, options.lora_alpha, options.lora_dropout) == (8, 16, 0.1)
    assert options.merge_weights is True
    assert options.resolved_checkpoint_dir == "/opt/ml/checkpoints"
    grpo = config.grpo_config
    assert grpo.temperature == pytest.approx(0.2) and grpo.top_p == pytest.approx(0.9)
    assert grpo.output_dir == "/opt/ml/checkpoints"
    assert grpo.bf16 is False
    assert config.override_lines == ["bf16: True -> False (needs a CUDA GPU and none was found; using float32 training instead)"]


def test_cpu_fallbacks_one_warning_each(tmp_path, tiny_config):
    gpu_config = {
        **tiny_config,
        "bf16": True,
        "attn_implementation": "flash_attention_2",
        "load_in_4bit": True,
        "use_vllm": True,
    }
    config = load_config(write_config(tmp_path, gpu_config), cuda_available=False)
    warnings = config.override_lines
    assert len(warnings) == 3
    assert any(w.startswith("bf16") and "float32" in w for w in warnings)
    assert any(w.startswith("attn_implementation") and "sdpa" in w for w in warnings)
    assert any(w.startswith("use_vllm") for w in warnings)
    assert config.options.attn_implementation == "sdpa"
    assert config.options.load_in_4bit is True, "QLoRA runs on the CPU through bitsandbytes (tests/test_qlora.py)"
    grpo = config.grpo_config
    assert grpo.bf16 is False and grpo.use_vllm is False


def test_no_fallback_warnings_for_a_cpu_config(tmp_path, tiny_config):
    assert load_config(write_config(tmp_path, tiny_config), cuda_available=False).overrides == ()


def test_batch_arithmetic_error_names_the_numbers(tmp_path, tiny_config):
    data = {**tiny_config, "per_device_train_batch_size": 3, "gradient_accumulation_steps": 2, "num_generations": 4}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, data))
    message = caught.value.message
    assert "num_generations=4" in message
    assert "per_device_train_batch_size (3)" in message and "(2)" in message and "= 6" in message
    assert "[2, 3, 6]" in message


def test_batch_arithmetic_counts_processes():
    trl_args = {"per_device_train_batch_size": 2, "num_generations": 4}
    check_batch_arithmetic(trl_args, world_size=2, source="cfg")  # 2 x 1 x 2 = 4: fine
    with pytest.raises(ConfigError, match=r"processes \(1\) = 2"):
        check_batch_arithmetic(trl_args, world_size=1, source="cfg")


def test_saved_config_masks_every_secret(tmp_path, tiny_config):
    data = {**tiny_config, "token": "hf_SECRET1", "wandb_token": "SECRET2", "hub_token": "SECRET3"}
    config = load_config(write_config(tmp_path, data))
    saved = save_resolved_config(config, tmp_path / "saved")
    text = saved.read_text(encoding="utf-8")
    assert "SECRET" not in text
    reloaded = yaml.safe_load(text)
    assert reloaded["token"] == reloaded["wandb_token"] == reloaded["hub_token"] == "***"
    assert reloaded["model_id"] == "builtin:tiny" and reloaded["max_steps"] == 2


def test_mask_secrets_leaves_non_secrets_alone():
    masked = mask_secrets({"include_num_input_tokens_seen": "all", "api_key": "k", "nested": {"hf_token": "t"}})
    assert masked == {"include_num_input_tokens_seen": "all", "api_key": "***", "nested": {"hf_token": "***"}}


def test_mask_secrets_covers_auth_headers_and_url_passwords():
    masked = mask_secrets(
        {
            "mlflow_uri": "https://bob:hunter2@mlflow.example:5000/path",
            "rewards": [{"name": "http", "headers": {"Authorization": "Bearer abc", "Cookie": "s=1", "Accept": "json"}}],
        }
    )
    assert masked["mlflow_uri"] == "https://bob:***@mlflow.example:5000/path"
    assert masked["rewards"][0]["headers"] == {"Authorization": "***", "Cookie": "***", "Accept": "json"}


def test_hub_token_never_reaches_grpo_config(tmp_path, tiny_config):
    config = load_config(write_config(tmp_path, {**tiny_config, "hub_token": "hf_SECRET"}))
    assert config.grpo_config.hub_token is None  # transformers pickles GRPOConfig into every checkpoint


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("run_name=2024-01-01", "run_name", "2024-01-01"),  # YAML would make it a date
        ("run_name=a=b", "run_name", "a=b"),
        ("max_steps=7", "max_steps", 7),
        ("report_to=[tensorboard]", "report_to", ["tensorboard"]),
    ],
)
def test_set_values(tmp_path, tiny_config, override, key, expected):
    assert load_config(write_config(tmp_path, tiny_config), [override]).trl_args[key] == expected


def test_sagemaker_section_is_checked_when_the_config_loads(tmp_path, tiny_config):
    path = write_config(tmp_path, {**tiny_config, "sagemaker": {"instance_typ": "ml.g5.xlarge"}})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.message
    assert "unknown config key 'sagemaker.instance_typ'" in message and str(path) in message
    assert "did you mean 'sagemaker.instance_type'?" in message
    good = load_config(write_config(tmp_path, {**tiny_config, "sagemaker": {"instance_type": "ml.g6e.2xlarge", "spot": True}}))
    assert good.options.sagemaker.instance_type == "ml.g6e.2xlarge" and good.options.sagemaker.spot is True


# ----------------------------------------------------------------------------- one resolved config per process


def test_train_reads_the_file_and_its_distributed_file_once(tmp_path, tiny_config, monkeypatch):
    from grpokit.cli.migration import accelerate_launch_options
    from grpokit.config import distributed, loading, read_config, resolve_config

    (tmp_path / "accelerate.yaml").write_text("distributed_type: MULTI_CPU\nnum_processes: 1\nmixed_precision: 'no'\n")
    path = write_config(tmp_path, {**tiny_config, "distributed": "accelerate.yaml"})
    reads: list[str] = []
    read_yaml, read_mapping = loading.read_yaml_file, distributed._read_mapping
    monkeypatch.setattr(loading, "read_yaml_file", lambda p: reads.append(Path(p).name) or read_yaml(p))
    monkeypatch.setattr(distributed, "_read_mapping", lambda p, s: reads.append(Path(p).name) or read_mapping(p, s))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    config_file = read_config(path, ["seed=3"])  # what `grpokit train` does in one process
    assert accelerate_launch_options(config_file, {"nnodes": None}) == (None, {"nnodes": None})
    placed = config_file.with_overrides([f"output_dir={tmp_path / 'model'}"])  # a SageMaker job's paths
    config = resolve_config(placed)
    assert reads == ["config.yaml", "accelerate.yaml"]
    assert config.distributed is config_file.distributed_setup and config.grpo_config.seed == 3
    assert config.options.output_dir == str(tmp_path / "model")


def test_the_resolved_config_is_frozen_and_holds_trls_config(tmp_path, tiny_config):
    import dataclasses

    config = load_config(data={**tiny_config, "rewards": [{"name": "length", "weight": 0.5}, "format"]})
    with pytest.raises(TypeError):
        config.trl_args["learning_rate"] = 1.0  # read-only
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.grpo_config = None
    assert config.grpo_config.reward_weights == [0.5, 1.0]  # given before TRL's checks ran, not assigned after
    assert [spec.name for spec in config.reward_specs] == ["length", "format"]
    assert load_config(data=tiny_config, world_size=2).grpo_config is None  # a launcher's check builds none


def test_reward_weights_weight_the_rewards_in_order_as_trl_reads_them(tiny_config):
    config = load_config(data={**tiny_config, "reward_weights": [1.0, 2.0]})
    assert [(spec.name, spec.weight) for spec in config.reward_specs] == [("rouge_l", 1.0), ("length", 2.0)]
    assert config.grpo_config.reward_weights == [1.0, 2.0]
    assert "reward_weights" not in config.trl_args, "the weights live in rewards: (the saved config reloads)"
    default_rewards = load_config(data={**tiny_config, "rewards": None, "reward_weights": [1, 0.5, 0.25]})
    assert [spec.weight for spec in default_rewards.reward_specs] == [1.0, 0.5, 0.25]


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"reward_weights": [1.0, 2.0, 3.0]}, "reward_weights has 3 values for 2 rewards (rouge_l, length)"),
        ({"reward_weights": [1.0]}, "reward_weights has 1 values for 2 rewards"),
        (
            {"reward_weights": [1.0, 2.0], "rewards": [{"name": "length", "weight": 0.5}, "format"]},
            "reward_weights and the weight: of reward 'length' are both given",
        ),
    ],
)
def test_reward_weights_of_the_wrong_length_or_with_weight_entries_are_refused(tiny_config, extra, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(data={**tiny_config, **extra})


def test_typed_accessors_for_the_trl_fields_grpokit_acts_on(tiny_config):
    config = load_config(
        data={**tiny_config, "push_to_hub": True, "hub_model_id": "me/m", "hub_token": "hf_x", "report_to": ["none", "tensorboard"]}
    )
    assert (config.hub.push, config.hub.model_id, config.hub.token) == (True, "me/m", "hf_x")
    assert config.report_to == ("tensorboard",) and config.run_name is None
    assert load_config(data={**tiny_config, "run_name": "r1"}).run_name == "r1"
