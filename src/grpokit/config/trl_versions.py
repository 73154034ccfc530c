"""Pinned TRL defaults (`trl_defaults: 0.17.0`) and where a resolved config differs from today's TRL.

TRL changes its GRPO defaults between releases: TRL 0.17.0 trained with `beta: 0.04` (a KL term to a
reference model), `loss_type: bnpo`, `max_prompt_length: 512`, `max_completion_length: 256` and
`temperature: 0.9`; TRL 1.16 uses `beta: 0.0`, `dapo`, no prompt limit, 512 and 1.0. A config written
for the old release trains something else under the new one unless it says which defaults it meant.

`trl_defaults: <version>` does that: every TRL field the file does not set takes that release's
default, read from `grpokit/config/trl_defaults/<version>.json`. Those tables are generated from
the released wheels by `scripts/trl_default_tables.py` (never typed by hand); a test checks the table
of the installed TRL against its `GRPOConfig`.

Precedence: today's TRL defaults < the pinned release's defaults < grpokit's own defaults
(`GRPOKIT_TRL_DEFAULTS`: logging every step and periodic checkpoints, which decide what is recorded,
not what is trained) < the file < `--set`.

A field the old release had and today's TRL has not:
- `max_prompt_length` becomes grpokit's own `max_prompt_length` option (with `truncate_prompts: true`,
  cutting prompts as TRL 0.x did);
- a value TRL now spells differently is translated (`scale_rewards: true` -> `"group"`);
- anything else (a field gone, or whose old default today's TRL no longer accepts) is listed in
  `PinnedDefaults.not_carried` and logged at debug level: it no longer means anything.

`default_differences(config)` lists, one line a field, where the resolved config differs from the
installed TRL's defaults and why; `grpokit validate` prints it and `grpokit train` logs it at start.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpokit.errors import ConfigError

TABLE_DIR = Path(__file__).resolve().parent / "trl_defaults"
# Old TRL fields that are grpokit options today (the option's name, and the options set with it).
FIELDS_AS_OPTIONS: dict[str, dict[str, Any]] = {
    # TRL 0.x cut every prompt to its last max_prompt_length tokens; grpokit does that with truncate_prompts.
    "max_prompt_length": {"truncate_prompts": True},
}
# Values an old release used that today's TRL spells differently.
VALUE_TRANSLATIONS: dict[str, dict[Any, Any]] = {
    "scale_rewards": {True: "group", False: "none"},  # TRL 0.x: a bool; TRL >= 0.23: "group", "batch", "none"
}
# Fields TRL added later whose default changed the algorithm: what releases before the field did, read
# from those releases' grpo_trainer.py (the tables cannot say: the field is not in them). In order; the
# first row whose release bound is above the pinned version applies.
BEHAVIOUR_BEFORE_FIELD: tuple[tuple[str, str, Any], ...] = (
    ("loss_type", "0.16.0", "grpo"),  # 0.14-0.15: each sequence's token mean, then the batch mean
    ("loss_type", "0.17.0", "bnpo"),  # 0.16: the local batch's token sum over its token count
    ("use_bias_correction_kl", "0.26.0", False),  # before 0.26 the KL term had no importance-sampling factor
)
# Where a value in the resolved config came from, for `default_differences`.
ORIGIN_FILE = "set in the config"
ORIGIN_GRPOKIT = "grpokit's default"
ORIGIN_MACHINE = "set by grpokit for this machine or launch"


@dataclass(frozen=True)
class PinnedDefaults:
    """What `trl_defaults: <version>` changes in a config that does not set those fields itself."""

    version: str
    trl_args: dict[str, Any] = field(default_factory=dict)  # TRL fields that take the old default
    options: dict[str, Any] = field(default_factory=dict)  # grpokit options that take an old TRL field's default
    not_carried: dict[str, Any] = field(default_factory=dict)  # old fields today's TRL no longer has


@dataclass(frozen=True)
class DefaultDifference:
    """One field where the resolved config differs from the installed TRL's default."""

    key: str
    value: Any
    trl_default: Any
    origin: str
    in_trl: bool = True  # False: a grpokit option standing in for a field today's TRL lacks

    def line(self, trl_version: str) -> str:
        default = f"TRL {trl_version} default: {self.trl_default!r}" if self.in_trl else f"TRL {trl_version} has no {self.key}"
        return f"{self.key}: {self.value!r} ({default}; {self.origin})"


@functools.cache
def available_versions() -> tuple[str, ...]:
    """Every TRL version with a shipped table, oldest first."""
    from packaging.version import Version

    return tuple(sorted((path.stem for path in TABLE_DIR.glob("*.json")), key=Version))


def resolve_version(text: str, source: str = "<config>") -> str:
    """A shipped table's version for `text`: the exact version, or the newest patch of `major.minor` (or `major.minor.x`).

    Raises:
        ConfigError: no table for that version, naming the nearest ones.
    """
    text = str(text).strip().removeprefix("v").removesuffix(".x")
    versions = available_versions()
    if text in versions:
        return text
    patches = [version for version in versions if version.startswith(text + ".")]
    if patches and text.count(".") == 1:
        return patches[-1]
    return _unknown_version(text, versions, source)


def _unknown_version(text: str, versions: tuple[str, ...], source: str):
    import difflib

    close = difflib.get_close_matches(text, versions, n=3, cutoff=0.5)
    raise ConfigError(
        f"trl_defaults: no table of TRL {text}'s defaults ships with grpokit",
        where=source,
        fix=(f"did you mean {' or '.join(close)}? " if close else "")
        + f"tables exist for TRL {versions[0]} to {versions[-1]}; `scripts/trl_default_tables.py` generates more",
    )


@functools.cache
def version_defaults(version: str) -> dict[str, Any]:
    """Every default of TRL `version`'s GRPOConfig: TRL's own fields, those it inherited then, and the
    behaviour of fields added later (`BEHAVIOUR_BEFORE_FIELD`)."""
    from packaging.version import Version

    table = json.loads((TABLE_DIR / f"{version}.json").read_text(encoding="utf-8"))
    defaults = {**table["inherited"], **table["defaults"]}
    for key, until, value in BEHAVIOUR_BEFORE_FIELD:
        if key not in defaults and Version(version) < Version(until):
            defaults[key] = value
    return defaults


def pinned_defaults(
    version: str, *, explicit_trl: set[str], explicit_options: dict[str, Any], option_names: set[str], source: str
) -> PinnedDefaults:
    """The defaults of TRL `version` that differ from the installed TRL's, for the fields a file leaves unset.

    `explicit_trl` / `explicit_options`: the TRL fields and grpokit options the file sets (they win);
    `option_names`: grpokit's option names (an old field that is a grpokit option today goes there when
    it exists; the file's own `max_prompt_length` then keeps its old meaning: prompts are cut).
    """
    from grpokit.config.trl_fields import check_trl_value, trl_defaults, trl_field_types

    current, types = trl_defaults(), trl_field_types()
    pinned = PinnedDefaults(version)
    for key, value in version_defaults(version).items():
        if key in FIELDS_AS_OPTIONS and key in option_names:
            companions = {k: v for k, v in FIELDS_AS_OPTIONS[key].items() if k not in explicit_options}
            if key in explicit_options:  # the file's own value, with the meaning it had then (prompts were cut)
                pinned.options.update(companions if explicit_options[key] is not None else {})
            elif value is not None:
                pinned.options.update({key: value, **companions})
            continue
        if key in explicit_trl or key in explicit_options:
            continue
        if key not in types:
            pinned.not_carried[key] = value
            continue
        value = _translated(key, value)
        if key in current and current[key] == value:
            continue
        try:
            pinned.trl_args[key] = check_trl_value(key, value, f"{source} (trl_defaults: {version})")
        except ConfigError:  # the field means something else today (vllm_gpu_memory_utilization: None in 0.17)
            pinned.not_carried[key] = value
    return pinned


def _translated(key: str, value: Any) -> Any:
    translations = VALUE_TRANSLATIONS.get(key, {})
    try:
        return translations.get(value, value)
    except TypeError:  # an unhashable value (a list, a dict) has no translation
        return value


def installed_trl_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("trl")


def default_differences(config) -> list[DefaultDifference]:
    """Where `config` (a `RunConfig`) differs from the installed TRL's defaults, one entry a field.

    TRL fields whose resolved value is not the installed `GRPOConfig`'s default, and grpokit options
    that stand in for a field of the pinned release which today's TRL lacks (`max_prompt_length`).
    Each names where its value came from: the file, `trl_defaults`, grpokit's defaults or this machine.
    """
    from grpokit.config.trl_fields import trl_defaults

    current = trl_defaults()
    differences = [
        DefaultDifference(key, value, current[key], config.trl_origins.get(key, ORIGIN_MACHINE))
        for key, value in sorted(config.trl_args.items())
        if key in current and not _same(value, current[key])
    ]
    options = config.options.model_dump()
    for key in FIELDS_AS_OPTIONS:
        if options.get(key) is not None and key not in current:
            differences.append(DefaultDifference(key, options[key], None, config.trl_origins.get(key, ORIGIN_FILE), in_trl=False))
    return differences


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    return value == default


def difference_lines(config) -> list[str]:
    """`default_differences` as the lines `validate` prints and `train` logs."""
    version = installed_trl_version()
    return [difference.line(version) for difference in default_differences(config)]
