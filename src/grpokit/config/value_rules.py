"""Values that TRL's `GRPOConfig` accepts but that fail (or train wrongly) once the model is loaded.

`GRPOConfig.__post_init__` checks a few rules; many values are only looked at later: `loss_type`
inside `compute_loss` after the first generation, `learning_rate` when torch builds the optimizer,
`max_steps: 0` never (the loop runs one step anyway). These checks ask TRL, transformers and torch
themselves, at load time, so a bad value is one message before any model is loaded:

- `trl_normalised_value`: a value TRL converts itself (`scale_rewards: false` -> "none") is accepted
  although it is not of the declared type;
- `check_documented_choices`: where a field's own help text (its dataclass metadata) lists the
  supported values ("Supported values are 'grpo', 'dr_grpo', ..."), any other value is an error
  naming the key, the value and the valid ones. Nothing is copied: the list is read from the
  installed TRL, and only when the help states it as a plain list;
- `check_evaluation_data`: evaluating (`eval_strategy` other than `no`, `eval_on_start`) needs evaluation
  data, which transformers only asks for when it first evaluates;
- `check_training_length`: transformers reads `max_steps > 0` as the step count and a negative one
  as "use num_train_epochs"; 0 steps (or 0 epochs) trains nothing;
- `check_optimizer_and_schedule`: transformers' own `Trainer.get_optimizer_cls_and_kwargs` and
  `get_scheduler` build the configured optimizer and schedule on one dummy parameter, so torch's
  own range checks (learning rate, betas, epsilon, weight decay) and a bad `lr_scheduler_kwargs`
  fail here.

What only a real step can show is left to `grpokit validate`'s trial step
(`grpokit.commands.trial_step`), which reports through `culprit_keys` and `rejected_value_error`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from grpokit.compat.trl_internals import grpo_rules_check
from grpokit.errors import ConfigError

RULES_CHECK_OUTPUT_DIR = "grpokit-value-check"  # never written: the check builds no trainer
_ITEM = r"(?:`'?|'|\")([A-Za-z0-9_.-]+)(?:'?`|'|\")"
_SEPARATOR = r"\s*(?:,\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+)"
# "Supported values are 'a', 'b', and 'c'." / "Must be one of `'x'` or `'y'`." -- a plain list, then the sentence ends
_CHOICES_SENTENCE = re.compile(
    rf"(?:[Ss]upported values are|[Mm]ust be one of|[Pp]ossible values are|[Vv]alid values are)\s*:?\s*\[?"
    rf"({_ITEM}(?:{_SEPARATOR}{_ITEM})+)\s*\]?\s*(?:\.(?:\s|$)|$)"
)


def trl_normalised_value(key: str, value: Any) -> tuple[bool, Any]:
    """(True, what TRL's own GRPOConfig turns `value` into) when TRL accepts it for `key`, else (False, None)."""
    check = grpo_rules_check({key: value}, world_size=1, output_dir=RULES_CHECK_OUTPUT_DIR, fields=(key,))
    if check.error is not None:
        return False, None
    return True, check.resolved.get(key)


@functools.cache
def _trl_fields() -> dict[str, Any]:
    import dataclasses

    from trl import GRPOConfig

    return {field.name: field for field in dataclasses.fields(GRPOConfig)}


def documented_choices(key: str) -> tuple[str, ...] | None:
    """The values TRL's help text for `key` lists as supported, or None when it lists none as a plain list.

    The list counts only when the field's default is one of its items (or the default is None), so a
    sentence that merely mentions a few values is never taken for the full list.
    """
    field = _trl_fields().get(key)
    if field is None:
        return None
    match = _CHOICES_SENTENCE.search(" ".join(str(field.metadata.get("help", "")).split()))
    if match is None:
        return None
    choices = tuple(dict.fromkeys(re.findall(_ITEM, match.group(1))))
    default = field.default
    if default is not None and default not in choices:
        return None
    return choices


def check_documented_choices(trl_args: Mapping[str, Any], source: str) -> None:
    """Every string value of a field whose help lists its supported values is one of them.

    Raises:
        ConfigError: naming the key, the value and the valid values.
    """
    for key, value in trl_args.items():
        if not isinstance(value, str):
            continue
        choices = documented_choices(key)
        if choices and value not in choices:
            raise ConfigError(
                f"{key}: {value!r} is not a value TRL supports; valid: {', '.join(choices)}",
                where=f"{source}, key {key}",
                fix=f"set {key} to one of {', '.join(repr(choice) for choice in choices)} (from TRL's own field help)",
            )


def check_training_length(trl_args: Mapping[str, Any], source: str) -> None:
    """max_steps and num_train_epochs leave at least one optimizer step to train.

    Raises:
        ConfigError: `max_steps: 0`, or no max_steps and `num_train_epochs` <= 0.
    """
    max_steps = trl_args.get("max_steps", -1)
    epochs = trl_args.get("num_train_epochs", 1.0)
    if max_steps == 0:
        raise ConfigError(
            "max_steps: 0 trains nothing: transformers reads a positive max_steps as the number of steps, "
            "and a negative one (the default -1) as 'train for num_train_epochs'",
            where=f"{source}, key max_steps",
            fix="set max_steps to 1 or more, or remove it to train for num_train_epochs",
        )
    if max_steps < 0 and isinstance(epochs, int | float) and epochs <= 0:
        raise ConfigError(
            f"num_train_epochs: {epochs} trains nothing (max_steps is not set, so the epochs decide)",
            where=f"{source}, key num_train_epochs",
            fix="set num_train_epochs above 0, or set max_steps",
        )


def evaluates(trl_args: Mapping[str, Any]) -> bool:
    """Whether the run evaluates: an `eval_strategy` other than `no`, or `eval_on_start`."""
    strategy = str(trl_args.get("eval_strategy", "no")).split(".")[-1].lower()
    return strategy != "no" or bool(trl_args.get("eval_on_start"))


def check_evaluation_data(options: Any, trl_args: Mapping[str, Any], source: str) -> None:
    """A run that evaluates needs evaluation data: `test_dataset_path`, `load_dataset`'s test split or a mixture's
    `test_split_size` (a `load_dataset:` test split missing from the dataset is found when it loads).

    Raises:
        ConfigError: the config evaluates and names no evaluation data.
    """
    if not evaluates(trl_args):
        return
    hub, mixture = options.load_dataset, options.dataset_mixture
    if (
        options.test_dataset_path
        or (hub is not None and hub.test_split is not None)
        or (mixture is not None and mixture.test_split_size is not None)
    ):
        return
    key = "eval_on_start: true" if trl_args.get("eval_on_start") else f"eval_strategy: {trl_args.get('eval_strategy')}"
    raise ConfigError(
        f"{key} evaluates during training, but the config has no evaluation data",
        where=source,
        fix="set test_dataset_path (load_dataset.test_split, dataset_mixture.test_split_size), or set eval_strategy: "
        "'no' and eval_on_start: false",
    )


def check_optimizer_and_schedule(grpo_args: Any, trl_args: Mapping[str, Any], source: str) -> None:
    """Build the configured optimizer and learning-rate schedule on one dummy parameter, as the Trainer will.

    Raises:
        ConfigError: transformers or torch rejects them (a negative learning rate, a beta outside
            [0, 1), an unknown scheduler argument, an optimizer whose package is missing, ...),
            naming the key.
    """
    import torch
    from transformers import Trainer
    from transformers.optimization import get_scheduler

    try:
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(grpo_args)
    except (ValueError, TypeError, ImportError, RuntimeError) as error:
        raise rejected_value_error(str(error), trl_args, source, stage="torch building the optimizer and schedule") from None
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        return  # factories and model-bound optimizers (GaLore, LOMO) need the real model
    if any(name in optimizer_kwargs for name in ("params", "model", "optimizer_dict")):
        return
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    steps = grpo_args.max_steps if grpo_args.max_steps > 0 else 100
    try:
        optimizer = optimizer_cls(
            [{"params": [parameter], "weight_decay": grpo_args.weight_decay}], **optimizer_kwargs
        )
        get_scheduler(
            grpo_args.lr_scheduler_type,
            optimizer=optimizer,
            num_warmup_steps=grpo_args.get_warmup_steps(steps),
            num_training_steps=steps,
            scheduler_specific_kwargs=grpo_args.lr_scheduler_kwargs,
        )
    except (ValueError, TypeError, ImportError, RuntimeError) as error:
        raise rejected_value_error(str(error), trl_args, source, stage="torch building the optimizer and schedule") from None


def _value_in(value: Any, message: str) -> bool:
    """True when `message` quotes `value` (for a mapping: one of its keys, `{num_cycle: 2}` -> 'num_cycle')."""
    if isinstance(value, Mapping):
        return any(_value_in(str(key), message) for key in value)
    if isinstance(value, list | tuple):
        return any(_value_in(item, message) for item in value)
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, str):
        texts = [value] if len(value) >= 2 else []
    elif isinstance(value, int | float) and math.isfinite(value) and value not in (0, 1):
        texts = {str(value), repr(float(value)), f"{value:g}"}
    else:
        return False
    return any(re.search(rf"(?<![\w.]){re.escape(text)}(?![\w.])", message) for text in texts)


def culprit_keys(message: str, settings: Mapping[str, Any], prefer: Iterable[str] = ()) -> list[str]:
    """The keys of `settings` an error message is most likely about: named in it (as `loss_type` or
    "loss type") and holding a value it quotes; else either of the two; keys in `prefer` first."""
    text = " ".join(message.lower().split())
    named = [key for key in settings if key in text or key.replace("_", " ") in text]
    quoted = [key for key in settings if _value_in(settings[key], message)]
    found = [key for key in named if key in quoted] or named or quoted
    preferred = set(prefer)
    return sorted(found, key=lambda key: (key not in preferred, found.index(key)))


def rejected_value_error(message: str, settings: Mapping[str, Any], source: str, *, stage: str) -> ConfigError:
    """One `ConfigError` for a value TRL, transformers or torch rejected: the key, its value, the valid ones."""
    first_line = (message.strip().splitlines() or ["(no message)"])[0]
    keys = culprit_keys(first_line, settings)
    if not keys:
        return ConfigError(
            f"TRL rejected the training options ({stage}): {first_line}",
            where=source,
            fix="change the option the message names (`grpokit keys --trl` lists them)",
        )
    key = keys[0]
    choices = documented_choices(key)
    valid = f"; TRL documents: {', '.join(choices)}" if choices else ""
    return ConfigError(
        f"{key}: {settings[key]!r} was rejected ({stage}): {first_line}{valid}",
        where=f"{source}, key {key}",
        fix=f"change {key}" + (f" to one of {', '.join(repr(choice) for choice in choices)}" if choices else ""),
    )


def check_reference_model_sync(options: Any, trl_args: Mapping[str, Any], source: str) -> None:
    """`sync_ref_model` needs a reference model of its own, which TRL keeps only in full fine-tuning.

    With LoRA, GRPOTrainer computes the reference by turning the adapter off and refuses `sync_ref_model`
    when it is built, after the model has loaded; this says so at load.

    Raises:
        ConfigError: `sync_ref_model: true` with `use_lora: true` (grpokit's default).
    """
    if trl_args.get("sync_ref_model") and options.use_lora:
        raise ConfigError(
            "sync_ref_model: true needs a separate reference model, and with LoRA (use_lora: true, grpokit's default) "
            "TRL keeps none: it turns the adapter off instead",
            where=source,
            fix="set use_lora: false (full fine-tuning, as TRL's own sync_ref_model test trains), or sync_ref_model: false",
        )
