"""`grpokit convert`: a config written for the AWS sample or `trl grpo`, rewritten as an explicit grpokit config.

The written config reproduces what the source trained there, and every value it sets says why:

- `aws-sample args.yaml`: the SageMaker sample's `train.py` (TRL 0.17.0): its TRL defaults
  (`trl_defaults: 0.17.0`), its model setup (4-bit NF4 with double quantization, bf16 compute and
  Flash Attention 2 when `bf16` is set), only the GRPOConfig fields its `train.py` passed on plus the
  values it hard-coded, and its three rewards as it computed them (ROUGE-L precision; the one-sided
  length reward `min(len + 1, 512) / 512`; the format reward, done right as grpokit does it);
- `aws-accelerate config.yaml`: the sample's accelerate variant, `grpo_advanced.py` (TRL 0.16.1):
  `trl grpo` keys, the reward model alone, the accelerate config file under `distributed:`;
- `trl config.yaml`: a `trl grpo --config` YAML, pinned to the TRL version it was written for.

`convert(kind, source_path, ...)` is pure (a mapping in, a `Conversion` out); `write_conversion`
writes the YAML, each note as a comment line above the keys.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from grpokit.commands.conversion import Conversion, show
from grpokit.commands.convert_trl import convert_trl
from grpokit.config import aws_sample
from grpokit.config.loading import read_yaml_file
from grpokit.config.trl_versions import installed_trl_version, resolve_version, version_defaults
from grpokit.errors import ConfigError, GrpokitError
from grpokit.outputs.files import atomic_write_text

Kind = Literal["aws-sample", "aws-accelerate", "trl"]
KINDS: tuple[str, ...] = ("aws-sample", "aws-accelerate", "trl")


def convert(
    kind: str,
    source_path: str | Path,
    *,
    trl_version: str | None = None,
    accelerate_config: str | None = None,
    data: SampleData | None = None,
) -> Conversion:
    """Convert the config at `source_path` (written for `kind`) into a grpokit config.

    `data`: where the AWS sample's datasets are outside the container (default: `SampleData.beside`).

    Raises:
        ConfigError: an unknown kind, an unreadable file, a TRL version without a table, or a key
            the source's tool did not know either.
    """
    raw = read_yaml_file(source_path)
    if kind == "aws-sample":
        data = data or SampleData.beside(source_path)
        return convert_aws_sample(raw, source=str(source_path), trl_version=trl_version, data=data)
    if kind in ("aws-accelerate", "trl"):
        default_version = aws_sample.ACCELERATE_SAMPLE_TRL_VERSION if kind == "aws-accelerate" else installed_trl_version()
        return convert_trl(
            raw, source=str(source_path), trl_version=trl_version or default_version, accelerate_config=accelerate_config, kind=kind
        )
    raise ConfigError(f"unknown kind of config {kind!r}", fix=f"use one of {', '.join(KINDS)}")


# ----------------------------------------------------------------------------- the AWS sample (train.py)


@dataclass(frozen=True)
class SampleData:
    """Where the AWS sample's datasets are outside the container: local folders or files, or `s3://` URIs.

    The sample's `args.yaml` names container paths (`/opt/ml/input/data/train/`: where SageMaker
    mounts the `train` channel inside the job); its notebook wrote the data to `./data/train/dataset.json`
    beside `args.yaml` and uploaded that to S3 as the channel.
    """

    train: str
    test: str | None = None

    @classmethod
    def beside(cls, args_path: str | Path) -> SampleData:
        """The notebook's layout: `data/train/` (and `data/test/`) in the folder of `args.yaml`, as written from here."""
        folder = Path(args_path).parent
        return cls(train=f"{(folder / 'data' / 'train').as_posix()}/", test=f"{(folder / 'data' / 'test').as_posix()}/")


def convert_aws_sample(
    raw: dict[str, Any], *, source: str, trl_version: str | None = None, data: SampleData | None = None
) -> Conversion:
    """The sample's `args.yaml` as a grpokit config that trains what the sample's `train.py` trained,
    with the container's paths replaced by the data's own (`data`) and local outputs, so the file runs
    as it is both on this machine and through `grpokit launch sagemaker`."""
    from grpokit.config.trl_fields import trl_field_names

    unknown = sorted(set(map(str, raw)) - set(aws_sample.SAMPLE_SCRIPT_DEFAULTS) - set(trl_field_names()))
    if unknown:
        raise ConfigError(
            f"{source} has keys the AWS sample does not read: {', '.join(unknown)}",
            where=source,
            fix="convert only the sample's args.yaml (its ScriptArguments and TrainingArguments keys)",
        )
    script = {key: raw.get(key, default) for key, default in aws_sample.SAMPLE_SCRIPT_DEFAULTS.items()}
    version = resolve_version(trl_version, source) if trl_version else aws_sample.SAMPLE_TRL_VERSION
    pinned_by = f"the sample pinned trl=={version}" if not trl_version else f"written for TRL {version}"
    result = Conversion()
    result.set("trl_defaults", version, f"{pinned_by}: every TRL field not set below takes its default")
    _sample_model(result, raw, script)
    _sample_paths_and_tracking(result, raw, script, data or SampleData.beside(source))
    _sample_rewards(result)
    _sample_grpo_fields(result, raw, script, version)
    return result


def _training_arguments_default(key: str) -> Any:
    """transformers' TrainingArguments default: the sample parsed args.yaml with TrainingArguments, not GRPOConfig."""
    from transformers import TrainingArguments

    return next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == key)


def _sample_model(result: Conversion, raw: dict[str, Any], script: dict[str, Any]) -> None:
    bf16 = bool(raw.get("bf16", _training_arguments_default("bf16")))
    result.set("model_id", script["model_id"], "model_id")
    result.set("load_in_4bit", True, "train.py always loads the base model in 4-bit NF4 with double quantization")
    result.set(
        "dtype",
        "bfloat16" if bf16 else "float32",
        "train.py's compute dtype: bfloat16 with bf16: true, else float32",
    )
    if bf16:
        result.set("attn_implementation", "flash_attention_2", "train.py turns on Flash Attention 2 when bf16 is set")
    result.set("use_lora", True, "train.py trains LoRA adapters (prepare_model_for_kbit_training, then get_peft_model)")
    for key in ("lora_r", "lora_alpha", "lora_dropout"):
        given = key in raw
        result.set(key, script[key], key if given else f"train.py's default {key}")
    result.set("lora_target_modules", "all-linear", "train.py: target_modules='all-linear', bias 'none'")
    result.set("merge_weights", bool(script["merge_weights"]), "merge_weights" if "merge_weights" in raw else "train.py's default")
    result.note(
        "not reproduced: train.py loaded the model with trust_remote_code=True; grpokit keeps it off "
        "(set trust_remote_code: true if your model ships its own code)"
    )
    if script["merge_weights"]:
        result.note(
            "not reproduced: train.py merged the adapter into a float16 copy of the base model; grpokit merges in "
            "the training dtype (a bf16-trained model can overflow in float16)"
        )


def _sample_paths_and_tracking(result: Conversion, raw: dict[str, Any], script: dict[str, Any], data: SampleData) -> None:
    given = {"train_dataset_path": data.train, "test_dataset_path": data.test}
    for key, channel in (("train_dataset_path", "train"), ("test_dataset_path", "test")):
        if script[key] and given[key]:
            result.set(key, given[key], _data_note(script[key], channel))
    model_name = str(script["model_id"]).rstrip("/").rsplit("/", 1)[-1]
    output_dir = f"outputs/{re.sub(r'[^a-z0-9]+', '-', model_name.lower()).strip('-') or 'model'}-grpo"
    if raw.get("output_dir") or script.get("checkpoint_dir"):
        result.set(
            "output_dir",
            output_dir,
            f"the sample's {raw.get('output_dir') or '/opt/ml/model'} is the job's model folder: a SageMaker job "
            "writes the final model to $SM_MODEL_DIR (uploaded as model.tar.gz) whatever this says; elsewhere it goes here",
        )
    if script.get("checkpoint_dir"):
        result.note(
            f"checkpoint_dir: {script['checkpoint_dir']} left out: the job's checkpoint folder, which a SageMaker job "
            "always uses (synced with S3); elsewhere checkpoints go to <output_dir>/checkpoints; resume: auto "
            "(grpokit's default) resumes from the last complete one, as train.py did"
        )
    for key in ("mlflow_uri", "mlflow_experiment_name"):
        if script[key]:
            result.set(key, script[key], f"{key}: MLflow is on when both are set, as in train.py")
    if script["wandb_token"]:
        result.set("wandb_project", script["wandb_project"], "train.py turned W&B on when wandb_token was non-empty")
    elif "wandb_project" in result.config or script["wandb_project"] != "project":
        result.note(
            f"wandb_project: {script['wandb_project']} left out: train.py turned W&B on only with a non-empty "
            "wandb_token, and this file has none (add wandb_project and export WANDB_API_KEY to track)"
        )
    if any(script.get(key) for key in ("token", "wandb_token")):
        result.note("token / wandb_token left out: secrets stay out of config files; export HF_TOKEN / WANDB_API_KEY")


def _sample_rewards(result: Conversion) -> None:
    rewards = [
        {"name": "rouge_l", "reference_column": "answer", "score": "precision", "use_stemmer": False},
        {"name": "length", "target_length": aws_sample.SAMPLE_LENGTH_TARGET, "penalize_longer": False, "offset": 1},
        {"name": "format"},
    ]
    result.set("rewards", rewards, "the sample's three rewards, each weight 1.0")
    result.note(
        "rouge_l: ROUGE-L precision against `answer` computed with rouge-score, without stemming; the sample used the "
        "`rouge` package (case-sensitive, punctuation attached to words) and scored a whole batch 0.0 when one "
        "completion was empty"
    )
    result.note("length: one-sided min(len + 1, 512) / 512, exactly the sample's reward_len")
    result.note(
        "format: deliberately different: the sample's format_reward_func could never reward <think>...</think> "
        "followed by <answer>...</answer> (each pattern had to match the whole completion); grpokit's format does"
    )


def _sample_grpo_fields(result: Conversion, raw: dict[str, Any], script: dict[str, Any], version: str) -> None:
    fsdp = bool(raw.get("fsdp")) and bool(raw.get("fsdp_config"))
    passed = [*aws_sample.SAMPLE_GRPO_FIELDS, *(aws_sample.SAMPLE_FSDP_FIELDS if fsdp else ("gradient_checkpointing",))]
    for key in passed:
        if key in raw:
            result.set(key, raw[key], f"{key}, passed to GRPOConfig by train.py")
        else:
            default = _training_arguments_default(key)
            result.set(key, default, f"train.py passed TrainingArguments' default {key}")
    for key in aws_sample.SAMPLE_GRPO_FROM_SCRIPT:
        why = key if key in raw else f"train.py's default {key}"
        result.set(key, script[key], f"{why}, passed to GRPOConfig by train.py")
    hard_coded = {**aws_sample.SAMPLE_HARD_CODED, **(aws_sample.SAMPLE_FSDP_HARD_CODED if fsdp else {})}
    for key, value in hard_coded.items():
        given = f"; args.yaml's {show(raw[key])} was overridden" if key in raw and raw[key] != value else ""
        result.set(key, value, f"hard-coded in train.py{given}")
    ignored = [key for key in raw if key not in result.config and key not in aws_sample.SAMPLE_SCRIPT_DEFAULTS]
    ignored += [key for key in ("top_p",) if key in raw]
    for key in ignored:
        result.note(
            f"{key}: {show(raw[key])} left out: train.py never passed it to GRPOConfig, so the sample trained with "
            f"{_effective_default(key, version)} (add it back to train with {show(raw[key])})"
        )


def _effective_default(key: str, version: str) -> str:
    old_defaults = version_defaults(version)
    if key in old_defaults:
        return f"TRL {version}'s {key} {show(old_defaults[key])}"
    try:
        return f"TrainingArguments' {key} {show(_training_arguments_default(key))}"
    except StopIteration:
        return f"no {key} (TRL {version} had no such field)"


def _data_note(container_path: str, channel: str) -> str:
    return (
        f"the sample's {container_path} is the job's mount of the `{channel}` channel, not an input; this is the data "
        f"itself: read here as it is, uploaded as that channel by `grpokit launch sagemaker` (an s3:// URI passes "
        f"through); change it with --{channel}-data or --set {channel}_dataset_path=..."
    )


# ----------------------------------------------------------------------------- writing


def write_conversion(conversion: Conversion, output_path: str | Path, *, source: str, kind: str, force: bool = False) -> Path:
    """Write the converted config as YAML, its notes as comments on top.

    Raises:
        ConfigError: the output exists and `force` is false.
    """
    output_path = Path(output_path)
    if output_path.exists() and not force:
        raise ConfigError(f"{output_path} already exists", fix="choose another -o path, or pass --force to replace it")
    header = [f"# Converted by `grpokit convert {kind} {source}`.", "# What each value reproduces:"]
    header += [f"#   {line}" for line in conversion.notes]
    body = yaml.safe_dump(conversion.config, sort_keys=False, allow_unicode=True, width=110)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(output_path, "\n".join(header) + "\n" + body)


@dataclass(frozen=True)
class ConvertReport:
    path: Path
    notes: list[str]
    check_error: str | None  # the written config's load error on this machine, or None


def run_convert(
    kind: str,
    source: str | Path,
    output: str | Path,
    *,
    trl_version: str | None = None,
    accelerate_config: str | Path | None = None,
    data: SampleData | None = None,
    force: bool = False,
) -> ConvertReport:
    """Convert `source`, write it to `output`, and check that the result loads as a grpokit config.

    An accelerate config path is written relative to the output file (as `distributed:` is read).

    Raises:
        ConfigError: as `convert` and `write_conversion` do, or the accelerate config does not exist.
    """
    import logging

    from grpokit.config.loading import load_config

    output = Path(output)
    relative_accelerate = None
    if accelerate_config is not None:
        accelerate_path = Path(accelerate_config)
        if not accelerate_path.is_file():
            raise ConfigError(f"accelerate config {accelerate_path} not found", fix="pass the accelerate config file")
        relative_accelerate = os.path.relpath(accelerate_path.resolve(), output.resolve().parent)
    conversion = convert(kind, source, trl_version=trl_version, accelerate_config=relative_accelerate, data=data)
    written = write_conversion(conversion, output, source=str(source), kind=kind, force=force)
    config_logger = logging.getLogger("grpokit.config")
    was_disabled, config_logger.disabled = config_logger.disabled, True  # this machine's fallbacks are not the job's
    try:
        load_config(written)
        check_error = None
    except GrpokitError as error:
        check_error = error.what
    finally:
        config_logger.disabled = was_disabled
    return ConvertReport(path=written, notes=conversion.notes, check_error=check_error)
