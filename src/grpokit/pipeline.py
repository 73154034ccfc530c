"""The stages every command shares: a loaded config's rewards, its data checked against them, its sampling.

`grpokit train`, `validate`, `rewards` and `eval` all start the same way: build the rewards the
config asks for (so their parameters and columns are known), then load the data and check that it
has every column those rewards read, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from grpokit.config.schema import TRAINING_DATA_SOURCES, RunConfig
from grpokit.config.value_rules import evaluates
from grpokit.data.hub import load_hub_datasets, load_hub_split
from grpokit.data.loading import LoadedData, load_datasets
from grpokit.data.mixture import load_mixture_datasets
from grpokit.data.prompt_lengths import bound_prompt_lengths, prompt_token_limit
from grpokit.data.prompts import prepare_dataset
from grpokit.data.readers import load_table
from grpokit.errors import ConfigError, DataError
from grpokit.model.generation import GenerationSettings, completion_token_ids, generate_completions
from grpokit.model.tool_loop import check_tool_template, generate_with_tools
from grpokit.rewards.agent import AgentSetup
from grpokit.rewards.reward_set import RewardSet, build_rewards

logger = logging.getLogger("grpokit.pipeline")


def build_reward_set(config: RunConfig) -> RewardSet:
    """The reward functions of the config's resolved rewards (`RunConfig.reward_specs`), in order.

    Raises:
        RewardConfigError: a reward is unknown or badly parameterised.
    """
    if not config.reward_specs and config.options.environment is not None:
        return RewardSet(funcs=[], weights=[], names=[])  # the environment's get_reward() is the reward (TRL adds it)
    return build_rewards(config.reward_specs, base_dir=config.base_dir)


def load_run_data(config: RunConfig, reward_set: RewardSet) -> LoadedData:
    """The train (and test) datasets, checked against the columns the rewards read.

    No training data is allowed only with an `environment:` (checked at load): then `train` is None and
    TRL drives `max_steps` steps with placeholder rows whose prompts the environment's `reset()` writes.

    Raises:
        DataError: as the readers do; and when the run evaluates (`eval_strategy`, `eval_on_start`) and the
            data has no test split (a `load_dataset:` dataset without one).
    """
    options, columns = config.options, reward_set.required_columns
    if all(getattr(options, name) is None for name in TRAINING_DATA_SOURCES):
        return LoadedData(train=None, test=None, description="train: no dataset, the environment's reset() makes each task")
    if options.load_dataset is not None:  # TRL's dataset_name: datasets.load_dataset
        data = load_hub_datasets(options.load_dataset, options.dataset, required_columns=columns)
    elif options.dataset_mixture is not None:  # TRL's datasets: TRL's get_dataset
        data = load_mixture_datasets(options.dataset_mixture, options.dataset, required_columns=columns)
    else:
        data = load_datasets(options.train_dataset_path, options.test_dataset_path, options.dataset, required_columns=columns)
    if data.test is None and evaluates(config.trl_args):
        raise DataError(
            f"the run evaluates during training (eval_strategy / eval_on_start), but {data.description} has no test split",
            where=config.source,
            fix="name a test split the dataset has (load_dataset.test_split), or set eval_strategy: 'no'",
        )
    return data


def check_agent(config: RunConfig, agent: AgentSetup, tokenizer, data: LoadedData) -> None:
    """What GRPOTrainer needs of the agent keys once the tokenizer and the data are known; `validate` and
    `train` both call this, so both stop with the same message.

    Raises:
        ConfigError: the chat template cannot call tools or keep prefixes (`model.tool_loop.check_tool_template`,
            the fix names `chat_template:`); an environment's `reset` does not accept the dataset's columns.
    """
    if agent.uses_tools:
        check_tool_template(tokenizer, environment=agent.environment_factory is not None, source=config.source)
    if data.train is None and agent.reset_signatures:  # TRL drives the run with placeholder rows of one empty prompt
        agent.check_reset_columns(["prompt"], source=config.source, data="no dataset: TRL's placeholder rows have a prompt column")
    for split, dataset in (("train", data.train), ("test", data.test)):
        if dataset is not None and agent.reset_signatures:
            agent.check_reset_columns(list(dataset.column_names), source=config.source, data=f"{split} dataset")


def load_split_rows(config: RunConfig, reward_set: RewardSet, split: str, max_rows: int | None) -> list[dict]:
    """The prepared rows of the `train` or `test` split, checked against the rewards' columns."""
    options = config.options
    if options.load_dataset is not None or options.dataset_mixture is not None:
        if options.load_dataset is not None:
            dataset = load_hub_split(options.load_dataset, options.dataset, split, required_columns=reward_set.required_columns)
        else:
            dataset = _mixture_split(options, reward_set, split, config.source)
        return [dataset[i] for i in range(len(dataset) if max_rows is None else min(max_rows, len(dataset)))]
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


def _mixture_split(options, reward_set: RewardSet, split: str, source: str):
    data = load_mixture_datasets(options.dataset_mixture, options.dataset, required_columns=reward_set.required_columns)
    dataset = data.train if split == "train" else data.test
    if dataset is None:
        raise ConfigError(
            "dataset_mixture has no test split to evaluate on", where=source, fix="set dataset_mixture.test_split_size, or pass --split train"
        )
    return dataset


def generation_settings(config: RunConfig, *, num_samples: int, batch_size: int = 32) -> GenerationSettings:
    """Sampling settings from the training config (max_completion_length, temperature, top_p, top_k, seed).

    Raises:
        ConfigError: `num_samples` is below 1.
    """
    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    args = config.grpo_config
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


def bound_run_prompts(
    config: RunConfig, data: LoadedData, tokenizer, *, model_context: int | None, tools: list | None = None
) -> tuple[LoadedData, list[str]]:
    """The run's data with every prompt within the prompt limit, and one line of token-length percentiles per split.

    `tools`: the tools offered in the prompt (`AgentSetup.all_tools()`): their JSON schemas count, as
    GRPOTrainer renders them into chat prompts.

    The limit is `max_prompt_length`, else `model_context` less `max_completion_length`; prompts over
    it are an error, or cut to fit with `truncate_prompts: true` (see `grpokit.data.prompt_lengths`).

    Raises:
        DataError: prompts over the limit (how many, the longest row), or no room left for a prompt.
    """
    args = config.grpo_config
    limit = prompt_token_limit(
        config.options.max_prompt_length,
        max_completion_length=args.max_completion_length,
        model_context=model_context,
        source=config.source,
    )
    splits, lines = {}, []
    for split, dataset in (("train", data.train), ("test", data.test)):
        if dataset is None:
            splits[split] = None
            continue
        splits[split], lengths = bound_prompt_lengths(
            dataset,
            tokenizer,
            limit=limit,
            truncate=config.options.truncate_prompts,
            source=f"{split} dataset ({config.source})",
            chat_template_kwargs={**(args.chat_template_kwargs or {}), **({"tools": tools} if tools else {})},
        )
        lines.append(lengths.describe(split))
    return dataclasses.replace(data, train=splits["train"], test=splits["test"]), lines


def generate_for_rows(
    config: RunConfig, agent: AgentSetup | None, model, tokenizer, rows: list[dict], settings: GenerationSettings
) -> tuple[list[list], list[list[list[int]]]]:
    """`settings.num_samples` completions per row, as training generates them: through TRL's tool loop
    (`model.tool_loop`) when the config has tools or an environment, else plain generation.

    Returns:
        (completions, completion_ids), each a list per row of `num_samples` entries; with tools a completion
        is its message list (assistant, tool, assistant ...) and its ids are its text's tokens. With tools, one
        log line counts the tool calls and failures (TRL's `tools/call_frequency` and `tools/failure_frequency`).
    """
    if agent is None or not agent.uses_tools:
        return generate_completions(model, tokenizer, [row["prompt"] for row in rows], settings)
    iterations = config.grpo_config.max_tool_calling_iterations
    rollouts = generate_with_tools(
        model,
        tokenizer,
        [row["prompt"] for row in rows],
        agent.tools,
        num_samples=settings.num_samples,
        temperature=settings.temperature,
        seed=settings.seed,
        max_new_tokens=settings.max_new_tokens,
        max_tool_calling_iterations=sys.maxsize if iterations is None else iterations,  # TRL: None is no limit
        batch_size=settings.batch_size,
        prepare_rollout=agent.rollout_preparer(rows),
    )
    ids = [completion_token_ids(tokenizer, per_row) for per_row in rollouts.completions]
    logger.info("%s", tool_counts_line(rollouts.tool_calls, rollouts.tool_failures, len(rows) * settings.num_samples))
    return rollouts.completions, ids


def tool_counts_line(calls: int, failures: int, completions: int) -> str:
    """The tool loop's counts in TRL's terms: calls per completion, failures per call.

    >>> tool_counts_line(6, 6, 16)
    'tool loop: 6 tool calls in 16 completions (call_frequency 0.375), 6 failed (failure_frequency 1)'
    """
    share = f"{failures / calls:.3g}" if calls else "0"
    return (
        f"tool loop: {calls} tool call{'' if calls == 1 else 's'} in {completions} completions "
        f"(call_frequency {calls / max(completions, 1):.3g}), {failures} failed (failure_frequency {share})"
    )
