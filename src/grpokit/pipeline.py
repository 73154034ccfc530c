"""The stages every command shares: a loaded config's rewards, its data checked against them, its sampling.

`grpokit train`, `validate`, `rewards` and `eval` all start the same way: build the rewards the
config asks for (so their parameters and columns are known), then load the data and check that it
has every column those rewards read, before any model is loaded.
"""

from __future__ import annotations

from grpokit.config.schema import RunConfig
from grpokit.data.loading import LoadedData, load_datasets
from grpokit.data.prompts import prepare_dataset
from grpokit.data.readers import load_table
from grpokit.errors import ConfigError
from grpokit.model.generation import GenerationSettings
from grpokit.rewards.reward_set import RewardSet, RewardSpec, build_rewards, default_reward_specs


def build_reward_set(config: RunConfig) -> RewardSet:
    """The config's `rewards:` (default: the AWS sample's three), plus `reward_model_name_or_path` when set.

    Raises:
        ConfigError: `rewards:` is an empty list.
        RewardConfigError: a reward is unknown or badly parameterised.
    """
    specs = config.options.rewards if config.options.rewards is not None else default_reward_specs()
    if not specs:
        raise ConfigError("rewards: is an empty list", where=config.source, fix="list at least one reward, or remove the key")
    if config.options.reward_model_name_or_path:  # the AWS sample's key: one more reward, the model's score
        specs = [*specs, RewardSpec(name="reward_model", model_name_or_path=config.options.reward_model_name_or_path)]
    return build_rewards(specs, base_dir=config.base_dir)


def load_run_data(config: RunConfig, reward_set: RewardSet) -> LoadedData:
    """The train (and test) datasets, checked against the columns the rewards read."""
    options = config.options
    return load_datasets(
        options.train_dataset_path,
        options.test_dataset_path,
        options.dataset,
        required_columns=reward_set.required_columns,
    )


def load_split_rows(config: RunConfig, reward_set: RewardSet, split: str, max_rows: int | None) -> list[dict]:
    """The prepared rows of the `train` or `test` split, checked against the rewards' columns."""
    options = config.options
    if split == "test" and options.test_dataset_path is None:
        raise ConfigError(
            "the config has no test_dataset_path to evaluate on",
            where=config.source,
            fix="set test_dataset_path, or pass --split train",
        )
    path = options.test_dataset_path if split == "test" else options.train_dataset_path
    what = f"{split} dataset"
    dataset = prepare_dataset(
        load_table(path, fmt=options.dataset.format, what=what),
        options.dataset,
        required_columns=reward_set.required_columns,
        source=f"{what} {path}",
    )
    count = len(dataset) if max_rows is None else min(max_rows, len(dataset))
    return [dataset[i] for i in range(count)]


def generation_settings(config: RunConfig, *, num_samples: int, batch_size: int = 32) -> GenerationSettings:
    """Sampling settings from the training config (max_completion_length, temperature, top_p, top_k, seed).

    Raises:
        ConfigError: `num_samples` is below 1.
    """
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    args = config.to_grpo_config()
    return GenerationSettings(
        max_new_tokens=args.max_completion_length,
        num_samples=num_samples,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k or None,
        batch_size=batch_size,
        seed=args.seed,
        chat_template_kwargs=dict(args.chat_template_kwargs or {}),
    )
