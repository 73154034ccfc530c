"""The config stage: one YAML file in, a checked `RunConfig` out.

| module | owns |
|---|---|
| `schema` | `GrpokitOptions` (grpokit's keys and typed sections) and `RunConfig`, the resolved config |
| `loading` | `read_config` (the YAML and `--set` overrides, once), `resolve_config`, `load_config` (both) |
| `trl_fields` | TRL's fields: types and defaults read from TRL, TRL's own rules (batch arithmetic) |
| `fallbacks` | what changes on a machine without CUDA |
| `distributed` | the `distributed:` sharding presets and their load-time checks |
| `rewards`, `sagemaker`, `health`, `dynamic_sampling` | typed sections (pydantic only) |
| `reference` | `grpokit keys` and the generated part of docs/config.md |

Example:
    >>> config = load_config("run.yaml", ["learning_rate=1e-5"])
    >>> config.options.model_id, config.grpo_config.learning_rate
"""

from grpokit.config.loading import (
    ConfigFile,
    apply_overrides,
    load_config,
    read_config,
    read_yaml_file,
    resolve_config,
)
from grpokit.config.reference import config_reference_markdown, options_reference, trl_reference
from grpokit.config.schema import GrpokitOptions, RunConfig
from grpokit.config.trl_fields import check_batch_arithmetic, trl_field_types

__all__ = [
    "ConfigFile",
    "GrpokitOptions",
    "RunConfig",
    "apply_overrides",
    "check_batch_arithmetic",
    "config_reference_markdown",
    "load_config",
    "options_reference",
    "read_config",
    "read_yaml_file",
    "resolve_config",
    "trl_field_types",
    "trl_reference",
]
