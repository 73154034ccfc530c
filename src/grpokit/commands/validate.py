"""`grpokit validate`: everything a training run checks, without training.

Loads and checks the config, loads the data against the rewards' needs, checks the batch arithmetic
(done by `load_config`), resolves model and tokenizer without loading weights, and runs every reward
on a few dataset rows with dummy completions. Then it measures the prompts in tokens (percentiles,
the prompt limit) and runs one real GRPO step with the config's TRL settings and rewards on the
built-in model (`trial_step`), so no value TRL or torch rejects in the loop passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from grpokit.commands.trial_step import TrialStep, run_trial_step
from grpokit.config.schema import RunConfig
from grpokit.model.generation import completion_token_ids
from grpokit.model.loading import ResolvedModel, model_context_length, resolve_model
from grpokit.pipeline import bound_run_prompts, build_reward_set, check_agent, load_run_data
from grpokit.rewards.agent import AgentSetup, resolve_agent
from grpokit.rewards.reward_set import run_rewards_on_rows

DUMMY_COMPLETIONS = ("", "<think>checking</think> <answer>42</answer>")


@dataclass
class ValidationReport:
    data_description: str
    model: ResolvedModel
    reward_names: list[str]
    reward_weights: list[float]
    reward_rows: list[dict]  # one entry per (row, dummy completion): scores per reward and the weighted total
    overrides: list[str]  # one line per value the run does not use as written (`RunConfig.overrides`)
    prompt_lengths: list[str] = field(default_factory=list)  # one line of token percentiles per split
    trial_step: TrialStep | None = None
    notes: list[str] = field(default_factory=list)  # settings that are valid but likely not what was meant


def validate(config: RunConfig, *, rows: int = 2, trial_step: bool = True) -> ValidationReport:
    """Run every check of a training run except training itself. Raises `GrpokitError` on bad input.

    `trial_step`: also run one GRPO step on the built-in model with the config's settings and rewards.
    """
    reward_set = build_reward_set(config)
    agent = resolve_agent(config)  # every tool's schema, each environment's reset, the rollout function
    data = load_run_data(config, reward_set)
    model = resolve_model(config.options)
    check_agent(config, agent, model.tokenizer, data)  # TRL's chat template checks (chat_template: applied); reset's columns
    data, prompt_lengths = bound_run_prompts(
        config, data, model.tokenizer, model_context=model_context_length(config.options), tools=agent.all_tools()
    )
    sample = [] if data.train is None else [data.train[i] for i in range(min(rows, len(data.train)))]
    scored = []
    for completion in DUMMY_COMPLETIONS:
        completions = [_as_completion(row["prompt"], completion) for row in sample]
        completion_ids = completion_token_ids(model.tokenizer, completions)  # for rewards counted in tokens
        for row, result in zip(sample, run_rewards_on_rows(reward_set, sample, completions, completion_ids=completion_ids)):
            scored.append({"row": row.get("grpokit_row"), "completion": completion, **_with_environment_reward(result, agent, row, config)})
    trial = run_trial_step(config, data.train, reward_set, agent) if trial_step else None
    return ValidationReport(
        data_description=data.description,
        model=model,
        reward_names=[*reward_set.names, *agent.environment_rewards],  # TRL adds each get_reward, weight 1
        reward_weights=[*reward_set.weights, *(1.0 for _ in agent.environment_rewards)],
        reward_rows=scored,
        overrides=config.override_lines,
        prompt_lengths=prompt_lengths,
        trial_step=trial,
        notes=logging_notes(config.trl_args) + agent_notes(agent),
    )


def logging_notes(trl_args: dict) -> list[str]:
    """What a run of these settings will not log: `logging_steps` above `max_steps` logs the last step only.

    >>> logging_notes({"max_steps": 6, "logging_steps": 10})
    ['logging_steps 10 is more than max_steps 6: the run logs only its last step (grpokit always logs it); set logging_steps: 1 to see every step']
    """
    max_steps, every = trl_args.get("max_steps", -1), trl_args.get("logging_steps", 1)
    strategy = str(trl_args.get("logging_strategy", "steps")).split(".")[-1].lower()
    if strategy != "steps" or not isinstance(max_steps, int) or max_steps <= 0 or not 1 <= every or every <= max_steps:
        return []
    note = (
        f"logging_steps {every:g} is more than max_steps {max_steps}: the run logs only its last step (grpokit always "
        "logs it); set logging_steps: 1 to see every step"
    )
    return [note]


def agent_notes(agent: AgentSetup) -> list[str]:
    """What the reward table's environment columns mean, and TRL's experimental features the config uses."""
    notes = [
        f"{name}: the environment's get_reward() right after reset(), before any tool call; in training it scores "
        "each rollout's final state (weight 1, TRL's rule)"
        for name in agent.environment_rewards
    ]
    notice = agent.experimental_notice()
    return notes + ([notice] if notice else [])


def _with_environment_reward(result: dict, agent: AgentSetup, row: dict, config: RunConfig) -> dict:
    """A row's scores with its environment's get_reward() after reset (no tool called), counted in the total."""
    extra = agent.reset_reward(row, source=config.source)
    if not extra:
        return result
    total = None if result["total"] is None else result["total"] + sum(extra.values())
    return {**result, "scores": {**result["scores"], **extra}, "total": total}


def _as_completion(prompt, text: str):
    """Chat prompts get chat completions, as TRL would produce them."""
    if isinstance(prompt, list):
        return [{"role": "assistant", "content": text}]
    return text
