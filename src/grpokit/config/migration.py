"""Configs written for other tools, read as they were meant: one step of `load_config`.

`read_foreign_keys` runs on a file's keys before they are split into grpokit's and TRL's:

1. `trl grpo` keys (TRL's ModelConfig / ScriptArguments, `grpokit.config.trl_cli`) are mapped onto
   grpokit's options;
2. `trl_defaults: <version>` gives every TRL field the file leaves unset that release's default
   (`grpokit.config.trl_versions`);
3. a file that only has the AWS sample's flat keys gets one warning pointing to `grpokit convert`
   (`grpokit.config.aws_sample`).

The result says where each TRL value came from, so `validate` and `train` can print one line per
field that differs from today's TRL defaults.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from grpokit.config import trl_versions
from grpokit.config.aws_sample import aws_sample_warning, looks_like_aws_sample
from grpokit.config.distributed import log_on_main_process
from grpokit.config.old_fields import old_field_names, read_old_fields
from grpokit.config.overrides import Override
from grpokit.config.trl_cli import options_from_trl_cli, trl_cli_keys

logger = logging.getLogger("grpokit.config")


@dataclass
class ForeignKeys:
    """A file's keys after the other tools' spellings are read: grpokit options, TRL fields, pinned defaults."""

    ours: dict[str, Any]
    theirs: dict[str, Any]
    pinned: trl_versions.PinnedDefaults | None = None
    warnings: list[str] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)  # keys read as another tool read them, or inert

    def trl_args(self, grpokit_defaults: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
        """today's TRL defaults < pinned release < grpokit's defaults < the file (`theirs`, type-checked)."""
        pinned = self.pinned.trl_args if self.pinned else {}
        return {**pinned, **grpokit_defaults, **theirs}

    def origins(
        self,
        loaded: dict[str, Any],
        final: dict[str, Any],
        grpokit_defaults: dict[str, Any],
        recorded: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Where each TRL value (and each grpokit option standing in for an old TRL field) came from.

        `loaded`: the TRL values as the file and the defaults gave them; `final`: after the CPU
        fallbacks and the `distributed:` setup, whose changes are this machine's or launch's unless
        `recorded` names their origin (`distributed: <file>`).
        """
        pinned_by = f"trl_defaults: {self.pinned.version}" if self.pinned else ""
        origins: dict[str, str] = {}
        for key, value in final.items():
            if recorded and recorded.get(key, "").startswith("distributed:"):
                origins[key] = recorded[key]
            elif key not in loaded or loaded[key] != value:
                origins[key] = trl_versions.ORIGIN_MACHINE
            elif key in self.theirs:
                origins[key] = trl_versions.ORIGIN_FILE
            elif key in grpokit_defaults:
                origins[key] = trl_versions.ORIGIN_GRPOKIT
            elif self.pinned and key in self.pinned.trl_args:
                origins[key] = pinned_by
        for key in self.pinned.options if self.pinned else ():
            origins[key] = pinned_by
        return origins


def split_trl_cli_keys(raw: dict[str, Any], own: set[str], trl_fields: frozenset[str] | set[str]) -> tuple[dict, dict]:
    """(the file's keys without TRL's CLI keys, those CLI keys): keys grpokit or GRPOConfig know stay."""
    cli_names = trl_cli_keys()
    rest, cli = {}, {}
    for key, value in raw.items():
        key = str(key)
        if key not in own and key not in trl_fields and key in cli_names:
            cli[key] = value
        else:
            rest[key] = value
    return rest, cli


def split_release_fields(raw: dict[str, Any], known: set[str], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the file's keys without the old ones, its fields of the `trl_defaults:` release that today's TRL lacks).

    `known`: the keys grpokit, today's TRL and `trl grpo` read. Without `trl_defaults:` nothing is split.

    Raises:
        ConfigError: `trl_defaults:` names no shipped table (see `trl_versions.resolve_version`).
    """
    if raw.get("trl_defaults") is None:
        return raw, {}
    version = trl_versions.resolve_version(str(raw["trl_defaults"]), source)
    old_names = old_field_names(version, known)
    return (
        {key: value for key, value in raw.items() if key not in old_names},
        {key: value for key, value in raw.items() if key in old_names},
    )


def read_foreign_keys(
    raw_keys: set[str],
    cli_keys: dict[str, Any],
    ours: dict[str, Any],
    theirs: dict[str, Any],
    *,
    option_names: set[str],
    trl_fields: frozenset[str] | set[str],
    source: str,
    old_fields: dict[str, Any] | None = None,
) -> ForeignKeys:
    """Map `trl grpo` keys onto grpokit options, apply `trl_defaults`, warn about AWS-sample-shaped files.

    `raw_keys`: every key the file sets; `cli_keys`: its TRL CLI keys (`split_trl_cli_keys`);
    `ours` / `theirs`: its grpokit options and GRPOConfig fields; `old_fields`: its fields of the
    `trl_defaults:` release that today's TRL lacks (`split_release_fields`), read by `config.old_fields`.

    Raises:
        ConfigError: as `options_from_trl_cli`, `trl_versions.resolve_version` and `old_fields.read_old_fields` do.
    """
    ours, theirs = dict(ours), dict(theirs)
    overrides: list[Override] = []
    if cli_keys:
        mapped = options_from_trl_cli(cli_keys, ours, theirs, source)
        ours = {**mapped.defaults, **ours, **mapped.options}
        ours = {key: value for key, value in ours.items() if value is not None or key in raw_keys or key == "lora_target_modules"}
        for key in mapped.consumed_trl_fields:
            theirs.pop(key, None)
        overrides += mapped.overrides
    if old_fields:
        reading = read_old_fields(old_fields, trl_versions.resolve_version(str(ours["trl_defaults"]), source), explicit=theirs, source=source)
        theirs.update(reading.trl_args)
        overrides += reading.overrides
    result = ForeignKeys(ours=ours, theirs=theirs, overrides=overrides)
    if ours.get("trl_defaults") is not None:
        version = trl_versions.resolve_version(str(ours["trl_defaults"]), source)
        ours["trl_defaults"] = version
        result.pinned = trl_versions.pinned_defaults(
            version, explicit_trl=set(theirs), explicit_options=dict(ours), option_names=option_names, source=source
        )
        result.ours = {**result.pinned.options, **ours}
        if result.pinned.not_carried:
            logger.debug(
                "trl_defaults %s: fields TRL %s no longer has: %s",
                version,
                trl_versions.installed_trl_version(),
                ", ".join(sorted(result.pinned.not_carried)),
            )
    elif looks_like_aws_sample(raw_keys, trl_fields):
        result.warnings.append(aws_sample_warning(source.split(" (with --set")[0], trl_versions.installed_trl_version()))
        log_on_main_process(logger, result.warnings)
    return result
