"""`trl_defaults: <version>`: the generated tables of TRL's GRPO defaults, pinning them, and the difference lines."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grpokit.cli import app
from grpokit.config import load_config, trl_versions
from grpokit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TRL_VERSION = importlib.metadata.version("trl")


def installed_grpo_defaults() -> dict:
    from trl import GRPOConfig

    values = {}
    for f in dataclasses.fields(GRPOConfig):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


# ----------------------------------------------------------------------------- the tables


def test_the_installed_trls_table_matches_its_grpo_config():
    table = json.loads((trl_versions.TABLE_DIR / f"{TRL_VERSION}.json").read_text())
    installed = installed_grpo_defaults()
    assert table["trl_version"] == TRL_VERSION and table["generated_by"] == "scripts/trl_default_tables.py"
    assert len(table["defaults"]) > 50
    for key, value in {**table["defaults"], **table["inherited"]}.items():
        assert key in installed, f"{key} is in the table but not a field of the installed GRPOConfig"
        assert installed[key] == value, f"{key}: table {value!r}, installed GRPOConfig {installed[key]!r}"


def test_tables_ship_for_every_release_from_014_to_today():
    versions = trl_versions.available_versions()
    assert versions[0] == "0.14.0" and versions[-1] == TRL_VERSION
    for minor in ("0.14", "0.15", "0.16", "0.17", "0.18", "0.19", "0.20", "0.25", "0.29", "1.0", "1.16"):
        assert any(v.startswith(minor + ".") for v in versions), minor
    for version in versions:
        table = json.loads((trl_versions.TABLE_DIR / f"{version}.json").read_text())
        assert table["trl_version"] == version and table["defaults"] and len(table["wheel_sha256"]) == 64


def test_the_0_17_0_table_has_the_samples_defaults():
    defaults = trl_versions.version_defaults("0.17.0")
    assert defaults["beta"] == 0.04 and defaults["loss_type"] == "bnpo"
    assert defaults["max_prompt_length"] == 512 and defaults["max_completion_length"] == 256
    assert defaults["temperature"] == 0.9 and defaults["scale_rewards"] is True
    # inherited from transformers' TrainingArguments of that time: TRL 0.17 did not redeclare them
    assert defaults["logging_steps"] == 500 and defaults["bf16"] is False and defaults["gradient_checkpointing"] is False


def test_fields_added_later_take_what_older_releases_did():
    assert trl_versions.version_defaults("0.15.2")["loss_type"] == "grpo"  # per-sequence mean
    assert trl_versions.version_defaults("0.16.1")["loss_type"] == "bnpo"  # token sum over the batch's tokens
    assert trl_versions.version_defaults("0.17.0")["use_bias_correction_kl"] is False


def load_generator():
    spec = importlib.util.spec_from_file_location("trl_default_tables", ROOT / "scripts" / "trl_default_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_reads_defaults_from_the_class_body_and_its_trl_bases(tmp_path):
    import ast
    import zipfile

    generator = load_generator()
    base = "from dataclasses import dataclass, field\n@dataclass\nclass _BaseConfig:\n    logging_steps: float = field(default=10)\n"
    grpo = (
        "from dataclasses import dataclass, field\nfrom .base_config import _BaseConfig\n"
        "@dataclass\nclass GRPOConfig(_BaseConfig):\n"
        "    beta: float = field(default=0.04, metadata={'help': 'KL'})\n"
        "    temperature: float = 0.9\n"
        "    reward_weights: list = field(default_factory=list)\n"
        "    stop: list = field(default_factory=lambda: ['</answer>'])\n"
        "    device: str = field(default=DEVICE)\n"
        "    required: int\n"
    )
    tree = ast.parse(grpo)
    defaults, unreadable = generator.class_defaults(tree, "GRPOConfig")
    assert defaults == {"beta": 0.04, "temperature": 0.9, "reward_weights": [], "stop": ["</answer>"]}
    assert unreadable == {"device": "field(default=DEVICE)"}

    wheel = tmp_path / "trl-0.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("trl/trainer/grpo_config.py", grpo)
        archive.writestr("trl/trainer/base_config.py", base)
    with zipfile.ZipFile(wheel) as archive:
        merged, _ = generator.trl_declared_defaults(archive)
    assert merged["logging_steps"] == 10 and merged["beta"] == 0.04


# ----------------------------------------------------------------------------- pinning


def test_trl_defaults_gives_unset_fields_the_old_releases_defaults(tiny_config):
    tiny_config.pop("max_completion_length")
    config = load_config(data={**tiny_config, "trl_defaults": "0.17.0"})
    grpo = config.grpo_config
    assert (grpo.beta, grpo.loss_type, grpo.max_completion_length, grpo.temperature) == (0.04, "bnpo", 256, 0.9)
    assert grpo.scale_rewards == "group"  # 0.17's True, spelled as today's TRL spells it
    assert grpo.top_k == 50
    assert config.options.max_prompt_length == 512 and config.options.truncate_prompts is True  # TRL 0.x cut prompts
    assert grpo.logging_steps == 1 and grpo.save_total_limit == 2  # grpokit's own defaults stay
    assert grpo.max_steps == 2  # the file wins


def test_a_field_the_file_sets_wins_over_the_pinned_default(tiny_config):
    config = load_config(data={**tiny_config, "trl_defaults": "0.17", "beta": 0.0, "max_prompt_length": 64})
    assert config.options.trl_defaults == "0.17.0"  # major.minor: the newest patch shipped
    assert config.grpo_config.beta == 0.0
    assert config.options.max_prompt_length == 64
    assert config.options.truncate_prompts is True  # max_prompt_length meant "cut prompts" in TRL 0.17
    plain = load_config(data={**tiny_config, "max_prompt_length": 64})
    assert plain.options.truncate_prompts is False  # grpokit's own meaning: longer prompts are an error


def test_pinning_the_installed_version_changes_nothing(tiny_config):
    plain = load_config(data=tiny_config).grpo_config.to_dict()
    pinned = load_config(data={**tiny_config, "trl_defaults": TRL_VERSION}).grpo_config.to_dict()
    assert pinned == plain


def test_an_unknown_version_names_the_nearest_tables(tiny_config):
    with pytest.raises(ConfigError, match="no table of TRL 0.17.9") as error:
        load_config(data={**tiny_config, "trl_defaults": "0.17.9"})
    assert "0.17.0" in error.value.fix


# ----------------------------------------------------------------------------- where the config differs from today's TRL


def test_difference_lines_name_each_field_its_value_the_default_and_why(tiny_config):
    tiny_config.pop("max_completion_length")
    config = load_config(data={**tiny_config, "trl_defaults": "0.17.0"}, cuda_available=False)
    lines = trl_versions.difference_lines(config)
    assert f"beta: 0.04 (TRL {TRL_VERSION} default: 0.0; trl_defaults: 0.17.0)" in lines
    assert f"loss_type: 'bnpo' (TRL {TRL_VERSION} default: 'dapo'; trl_defaults: 0.17.0)" in lines
    assert f"max_steps: 2 (TRL {TRL_VERSION} default: -1; set in the config)" in lines
    assert f"logging_steps: 1 (TRL {TRL_VERSION} default: 10; grpokit's default)" in lines
    assert f"max_prompt_length: 512 (TRL {TRL_VERSION} has no max_prompt_length; trl_defaults: 0.17.0)" in lines
    assert f"bf16: False (TRL {TRL_VERSION} default: None; trl_defaults: 0.17.0)" in lines  # 0.17 inherited bf16 off
    assert f"dataloader_pin_memory: False (TRL {TRL_VERSION} default: True; set by grpokit for this machine or launch)" in lines
    assert len({line.split(":")[0] for line in lines}) == len(lines), "one line a field"
    assert not any(line.startswith("learning_rate: 1e-06") for line in lines), "fields equal to the default are not listed"


@pytest.mark.slow
def test_validate_prints_the_difference_lines(tiny_config, tmp_path):
    import yaml

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**tiny_config, "trl_defaults": "0.17.0"}))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"differs from TRL {TRL_VERSION}'s defaults in" in result.output
    assert f"  beta: 0.04 (TRL {TRL_VERSION} default: 0.0; trl_defaults: 0.17.0)" in result.output


@pytest.mark.slow
def test_train_logs_the_difference_lines_at_start(tiny_config, caplog):
    from grpokit.trainer import train

    caplog.set_level(logging.DEBUG, logger="grpokit")
    result = train(load_config(data={**tiny_config, "max_steps": 1, "trl_defaults": "0.17.0"}))
    assert result.global_step == 1
    table = result.output_dir / "trl_differences.txt"
    line = f"beta: 0.04 (TRL {TRL_VERSION} default: 0.0; trl_defaults: 0.17.0)"
    assert line in table.read_text().splitlines(), "the full table, in a file of the run"
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert f"TRL fields that differ from TRL {TRL_VERSION}'s defaults: " in "\n".join(info) and f"(the table: {table})" in "\n".join(info)
    assert any(message.startswith("  trl_defaults 0.17.0: beta=0.04, ") for message in info), "one compact line per origin"
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert f"differs from TRL's defaults: {line}" in debug, "every line with --verbose"
