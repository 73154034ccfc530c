"""`trl grpo`'s own keys in detail: the launch keys, `datasets:` mixtures, an older release's fields, `convert trl`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import write_jsonl
from grpokit.cli.migration import accelerate_launch_options
from grpokit.config import load_config, read_config
from grpokit.errors import ConfigError

ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(10, 22), range(50, 62))]
SMALL = {"per_device_train_batch_size": 3, "num_generations": 3, "max_completion_length": 8, "max_steps": 2}
RENDEZVOUS = {"nnodes": None, "node_rank": None, "master_addr": None, "master_port": None}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", ROWS)


def trl_config(data: Path, **keys) -> dict:
    return {"model_name_or_path": "builtin:tiny", "train_dataset_path": str(data), "rewards": [{"name": "length"}], **SMALL, **keys}


def launch(config: dict, monkeypatch, **given):
    for name in ("WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "ACCELERATE_MIXED_PRECISION", "SM_CURRENT_HOST"):
        monkeypatch.delenv(name, raising=False)
    return accelerate_launch_options(read_config(data=config), {**RENDEZVOUS, **given}, announce=False)


# ----------------------------------------------------------------------------- launch keys


def test_num_processes_sets_the_processes_train_starts(data, monkeypatch):
    assert launch(trl_config(data, num_processes=4), monkeypatch) == (4, RENDEZVOUS)
    nodes = launch(trl_config(data, num_processes=4, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1"), monkeypatch)
    assert nodes == (2, {"nnodes": 2, "node_rank": 1, "master_addr": "10.0.0.1", "master_port": None})
    assert launch(trl_config(data), monkeypatch) == (None, RENDEZVOUS)


def test_accelerate_config_names_trls_shipped_profiles_and_num_processes_wins_over_the_file(data, monkeypatch):
    assert launch(trl_config(data, accelerate_config="multi_gpu"), monkeypatch)[0] == 8  # the profile's num_processes
    assert launch(trl_config(data, accelerate_config="multi_gpu", num_processes=2), monkeypatch)[0] == 2
    config = load_config(data=trl_config(data, accelerate_config="zero2"), cuda_available=False, world_size=2)
    said = {override.key: override for override in config.overrides}
    assert str(said["distributed"].written).endswith("trl/accelerate_configs/zero2.yaml")  # TRL's shipped profile
    assert said["distributed"].used == config.options.distributed == "ddp"  # no GPU: DeepSpeed becomes data parallel, said


def test_a_launchers_own_count_wins_over_num_processes_and_is_said(data):
    config = load_config(data=trl_config(data, num_processes=4), cuda_available=False, world_size=2)
    (override,) = [o for o in config.overrides if o.key == "num_processes"]
    assert (override.written, override.used) == (4, 2)


def test_accelerate_config_and_distributed_naming_different_files_is_an_error(data, tmp_path):
    with pytest.raises(ConfigError, match="are both set"):
        load_config(data=trl_config(data, accelerate_config="zero2", distributed="ddp"), cuda_available=False)


# ----------------------------------------------------------------------------- datasets: mixtures


def test_a_datasets_mixture_loads_as_trls_get_dataset_loads_it(tmp_path):
    from trl import DatasetMixtureConfig, get_dataset
    from trl.scripts.utils import DatasetConfig

    from grpokit.pipeline import build_reward_set, load_run_data

    first = write_jsonl(tmp_path / "a.jsonl", [{**row, "extra": 1} for row in ROWS[:9]])
    second = write_jsonl(tmp_path / "b.jsonl", ROWS[9:])
    entries = [
        {"path": "json", "data_files": str(first), "columns": ["prompt", "answer"], "fraction": 0.6},
        {"path": "json", "data_files": str(second), "fraction": 0.4},
    ]
    config = load_config(
        data={"model_name_or_path": "builtin:tiny", "datasets": entries, "test_split_size": 2, "dataset_name": "ignored",
              "rewards": [{"name": "length"}], **SMALL},
        cuda_available=False,
    )
    assert [o.key for o in config.overrides if o.inert] == ["dataset_name"]  # trl grpo loads the mixture instead
    loaded = load_run_data(config, build_reward_set(config))
    expected = get_dataset(DatasetMixtureConfig(datasets=[DatasetConfig(**entry) for entry in entries], test_split_size=2))
    assert loaded.test is not None and (len(loaded.train), len(loaded.test)) == (len(expected["train"]), len(expected["test"])) == (5, 2)
    mixed = sorted([*loaded.train["prompt"], *loaded.test["prompt"]])  # TRL's split is unseeded: compare the mixed rows
    assert mixed == sorted([*expected["train"]["prompt"], *expected["test"]["prompt"]])  # the rows TRL's fractions pick
    assert set(loaded.train.column_names) >= {"prompt", "answer"} and "extra" not in loaded.train.column_names


def test_a_mixture_entry_with_an_unknown_key_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(data={"model_name_or_path": "builtin:tiny", "datasets": [{"path": "json", "data_file": "x"}], **SMALL}, cuda_available=False)
    assert "data_file" in str(error.value)


# ----------------------------------------------------------------------------- an older release's fields


def test_a_pinned_release_reads_its_training_arguments_fields(data):
    config = load_config(
        data=trl_config(data, trl_defaults="0.18.0", warmup_ratio=0.1, overwrite_output_dir=True, evaluation_strategy="no",
                        adafactor=True),
        cuda_available=False,
    )
    grpo = config.grpo_config
    assert (grpo.warmup_steps, grpo.eval_strategy.value, grpo.optim.value) == (0.1, "no", "adafactor")
    assert grpo.get_warmup_steps(100) == 10  # 10% of the steps, as warmup_ratio: 0.1 warmed up in transformers 4
    said = {o.key: o for o in config.overrides}
    assert said["overwrite_output_dir"].inert and not said["warmup_ratio"].inert


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"warmup_ratio": 1.5}, "warmup_ratio: 1.5 warms up over the whole run"),
        ({"evaluation_strategy": "steps", "eval_strategy": "no"}, "evaluation_strategy (an older release's field) and eval_strategy"),
        ({"use_ipex": True}, "use_ipex: True was read by TRL 0.18.0"),
    ],
)
def test_an_older_releases_field_that_cannot_be_honoured_is_one_error(data, keys, message):
    with pytest.raises(ConfigError) as error:
        load_config(data=trl_config(data, trl_defaults="0.18.0", **keys), cuda_available=False)
    assert message in error.value.what


def test_warmup_steps_wins_over_warmup_ratio_as_it_did(data):
    config = load_config(data=trl_config(data, trl_defaults="0.18.0", warmup_ratio=0.1, warmup_steps=3), cuda_available=False)
    assert config.grpo_config.warmup_steps == 3
    assert next(o for o in config.overrides if o.key == "warmup_ratio").inert


# ----------------------------------------------------------------------------- convert trl


def convert_file(tmp_path: Path, raw: dict, *args: str):
    from typer.testing import CliRunner

    from grpokit.cli import app

    source = tmp_path / "trl.yaml"
    source.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return CliRunner().invoke(app, ["convert", "trl", str(source), "-o", str(tmp_path / "out.yaml"), *args])


TRL_FILE = {"model_name_or_path": "builtin:tiny", "dataset_name": "some/dataset", "reward_funcs": ["accuracy_reward"]}


def test_convert_trl_keeps_an_unknown_reward_name_an_error(tmp_path):
    result = convert_file(tmp_path, {**TRL_FILE, "reward_funcs": ["accuracy_reward", "format"]})  # open-r1's recipes
    assert result.exit_code == 2 and "reward_funcs: 'format' is neither one of trl grpo's rewards" in result.output
    assert not (tmp_path / "out.yaml").exists()


def test_convert_trl_stops_on_a_reward_weights_list_longer_than_the_rewards(tmp_path):
    result = convert_file(tmp_path, {**TRL_FILE, "reward_weights": [1.0, 0.5]})
    assert result.exit_code == 2 and "reward_weights has 2 values for 1 rewards" in result.output


def test_convert_trl_reads_the_fields_of_the_pinned_release(tmp_path):
    raw = {**TRL_FILE, "overwrite_output_dir": True, "warmup_ratio": 0.1, "num_processes": 2}
    result = convert_file(tmp_path, raw, "--trl-version", "0.18.x")
    assert result.exit_code == 0, result.output
    converted = yaml.safe_load((tmp_path / "out.yaml").read_text(encoding="utf-8"))
    assert converted["trl_defaults"] == "0.18.2" and converted["warmup_steps"] == 0.1 and converted["num_processes"] == 2
    assert "warmup_ratio" not in converted and "overwrite_output_dir" not in converted
    assert "overwrite_output_dir: True has no effect" in result.output


def test_convert_trl_writes_a_mixture_as_dataset_mixture(tmp_path):
    raw = {**TRL_FILE, "dataset_name": None, "datasets": [{"path": "json", "data_files": "a.jsonl"}], "test_split_size": 0.1}
    result = convert_file(tmp_path, {k: v for k, v in raw.items() if v is not None})
    assert result.exit_code == 0, result.output
    converted = yaml.safe_load((tmp_path / "out.yaml").read_text(encoding="utf-8"))
    assert converted["dataset_mixture"] == {"datasets": [{"path": "json", "data_files": "a.jsonl"}], "test_split_size": 0.1}


# ----------------------------------------------------------------------------- trust_remote_code


def test_trust_remote_code_reaches_trl_and_a_reward_model_kept_off_is_said(data, tiny_reward_model):
    config = load_config(
        data={**trl_config(data, trust_remote_code=True), "rewards": None, "reward_model_name_or_path": str(tiny_reward_model)},
        cuda_available=False,
    )
    assert config.options.trust_remote_code and config.grpo_config.trust_remote_code
    (override,) = [o for o in config.overrides if o.key.startswith("trust_remote_code")]
    assert (override.written, override.used) == (True, False) and str(tiny_reward_model) in override.key
    trusted = load_config(
        data={**trl_config(data, trust_remote_code=True), "rewards": [{"name": "reward_model", "model_name_or_path": str(tiny_reward_model),
                                                                         "trust_remote_code": True}]},
        cuda_available=False,
    )
    assert not [o for o in trusted.overrides if o.key.startswith("trust_remote_code")]


# ----------------------------------------------------------------------------- the report


def test_the_reports_config_section_lists_what_the_run_did_not_use_as_written():
    from grpokit.outputs.report_sections import override_rows

    info = {"overrides": [
        {"key": "bf16", "written": True, "used": False, "effect": "changed", "why": "needs a CUDA GPU"},
        {"key": "vllm_structured_outputs_regex", "written": "a.*", "used": None, "effect": "none", "why": "vLLM is off"},
    ]}
    rows = override_rows(info)
    assert [(r.key, r.written, r.used) for r in rows] == [("bf16", "true", "false"), ("vllm_structured_outputs_regex", '"a.*"', "no effect")]
    assert override_rows({}) == [] and override_rows(json.loads("{}")) == []
