"""The GRPO recipe: config -> data -> model -> rewards -> TRL GRPOTrainer -> saved model.

`train(config)` reads top to bottom: build rewards, load data (checked against the rewards before any
model is loaded), load model and tokenizer, build TRL's trainer, resume if a complete checkpoint
exists, train, save the model and the resolved config.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpokit.compat.trl_internals import load_checkpoint_weights
from grpokit.config.schema import RunConfig
from grpokit.config.value_rules import rejected_value_error
from grpokit.data.loading import LoadedData
from grpokit.model.loading import (
    check_lora_targets,
    load_model,
    load_tokenizer,
    lora_config,
    model_context_length,
)
from grpokit.model.quantization import float32_adapters_on_cpu
from grpokit.outputs.checkpoints import (
    checkpoint_global_step,
    resume_checkpoint,
    set_aside_later_checkpoints,
)
from grpokit.outputs.files import METRICS_FILE
from grpokit.outputs.fs_faults import filesystem_faults
from grpokit.outputs.hub import push_final_model
from grpokit.outputs.run_info import options_line, record_run_start
from grpokit.outputs.run_lock import run_lock
from grpokit.outputs.saving import save_final_model, save_resolved_config
from grpokit.pipeline import bound_run_prompts, build_reward_set, check_agent, load_run_data
from grpokit.rewards.agent import TRL_EXPERIMENTAL_WARNING, AgentSetup, resolve_agent
from grpokit.rewards.reward_set import RewardSet
from grpokit.trainer.health import HealthTrip
from grpokit.trainer.reward_callbacks import summed_over_ranks
from grpokit.trainer.run_callbacks import RunCallbacks, build_run_callbacks, install_run_callbacks

logger = logging.getLogger("grpokit.trainer")

@dataclass
class TrainResult:
    """What a finished training produced."""

    output_dir: Path
    global_step: int
    resumed_from: Path | None
    train_seconds: float
    metrics_path: Path
    reward_failures: dict[str, int]  # failures per reward configured `on_error: zero` (only those that failed)
    stopped_by_signal: int | None = None  # set when SIGTERM stopped training; the last checkpoint holds the state
    stopped_by_health: HealthTrip | None = None  # set when a health check with action stop tripped (checkpoint saved)
    resumed_step: int = 0  # the checkpoint's step when resumed: this run trained global_step - resumed_step steps
    is_main_process: bool = True  # this process is the job's rank 0 (it reports; the others only train)


def build_trainer(
    config: RunConfig,
    data: LoadedData,
    reward_set: RewardSet,
    tokenizer,
    *,
    console=None,
    extra_callbacks: Sequence[TrainerCallback] = (),
    agent: AgentSetup | None = None,
) -> tuple[Any, RunCallbacks]:
    """Load the model, then TRL's GRPOTrainer with the run's `GRPOConfig`, `tokenizer` and grpokit's callbacks.

    `agent`: the config's tools, environments and rollout function (`resolve_agent`), passed to the trainer.

    Returns the trainer and its callbacks by name (`extra_callbacks` come first, so their `on_log` can
    add keys that metrics.jsonl then records; see `grpokit.trainer.run_callbacks`).
    """
    from grpokit.trainer.dynamic_sampling.trainer import trainer_class_for

    options, args = config.options, config.grpo_config
    model = load_model(options, gradient_checkpointing=args.gradient_checkpointing, fsdp=bool(args.fsdp))
    check_lora_targets(options, model)
    trainer_class, trainer_kwargs = trainer_class_for(options.dynamic_sampling)  # TRL's, or with dynamic sampling
    try:
        with warnings.catch_warnings():  # TRL's "experimental" warning: grpokit says it once, below
            warnings.filterwarnings("ignore", message=TRL_EXPERIMENTAL_WARNING, category=UserWarning)
            trainer = trainer_class(
                model=model,
                reward_funcs=list(reward_set.funcs),  # a copy: TRL appends the environments' get_reward to its list
                args=args,
                train_dataset=data.train,
                eval_dataset=data.test,
                processing_class=tokenizer,
                peft_config=lora_config(options),
                **(agent.trainer_kwargs() if agent is not None else {}),
                **trainer_kwargs,
            )
    except (ValueError, NotImplementedError, AttributeError) as error:  # what TRL finds only here: one error, as validate's
        raise rejected_value_error(str(error), config.trl_args, config.source, stage="building GRPOTrainer") from None
    notice = agent.experimental_notice() if agent is not None else None
    if notice is not None and trainer.is_world_process_zero():
        logger.warning("%s", notice)
    float32_adapters_on_cpu(trainer.model)  # TRL made a quantized model's adapters bfloat16: slow and coarse on a CPU
    callbacks = build_run_callbacks(
        trainer,
        config,
        reward_set,
        data.train,
        is_main_process=trainer.is_world_process_zero(),
        console=console,
        extra=extra_callbacks,
    )
    install_run_callbacks(trainer, config, callbacks)
    return trainer, callbacks


def train(config: RunConfig, *, console=None, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """Run GRPO as configured and save the result. Raises `GrpokitError` subclasses on bad input.

    One run at a time per output_dir (`outputs.run_lock`: a second one is `RunLockedError`, exit 2);
    the output folders are checked writable first, and a full disk or a read-only folder during the run
    is one `FilesystemError` naming the path (`outputs.fs_faults`); the run resumes once it is fixed.
    """
    options = config.options
    with filesystem_faults(options.output_dir, options.resolved_checkpoint_dir), run_lock(options.output_dir):
        return _train(config, console=console, extra_callbacks=extra_callbacks)


def _train(config: RunConfig, *, console=None, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    options = config.options
    if config.hub.token:  # kept out of GRPOConfig (pickled into checkpoints); the Hub reads HF_TOKEN
        os.environ.setdefault("HF_TOKEN", config.hub.token)
    reward_set = build_reward_set(config)
    agent = resolve_agent(config)  # tools, environments, rollout function: imported and checked before any weights
    data = load_run_data(config, reward_set)
    logger.info("%s", data.description)
    tokenizer = load_tokenizer(options)  # once: for the prompt limits and for the trainer
    check_agent(config, agent, tokenizer, data)  # as validate does: the same message for the same mistake
    data, prompt_lengths = bound_run_prompts(
        config, data, tokenizer, model_context=model_context_length(options), tools=agent.all_tools()
    )  # no prompt longer than max_prompt_length reaches generation
    for line in prompt_lengths:
        logger.info("%s", line)
    resume_from = resume_checkpoint(options.resume, options.resolved_checkpoint_dir)
    trainer, callbacks = build_trainer(
        config, data, reward_set, tokenizer, console=console, extra_callbacks=extra_callbacks, agent=agent
    )
    is_main_process = trainer.is_world_process_zero()  # the trainer's answer, for everything below and the CLI
    output_dir = Path(options.output_dir)
    resumed_step = checkpoint_global_step(resume_from) if resume_from is not None else 0
    if is_main_process:
        saved = save_resolved_config(config, output_dir)
        logger.info("config: %s (resolved config: %s)", options_line(config), saved)
        # run_info.json (versions, hardware) and trl_differences.txt; the log gets a compact block naming it
        for line in record_run_start(config, output_dir, world_size=trainer.args.world_size):
            logger.info("%s", line)
        set_aside_later_checkpoints(options.resolved_checkpoint_dir, after_step=resumed_step)
    trainer.accelerator.wait_for_everyone()
    started = time.perf_counter()
    if resume_from is not None and 0 < trainer.args.max_steps <= resumed_step:
        # transformers would run one more step before noticing that max_steps is reached; load the
        # checkpoint's weights so the final save is that model
        logger.info("%s is already at max_steps=%d: nothing to train", resume_from, trainer.args.max_steps)
        load_checkpoint_weights(trainer, str(resume_from))
        trainer.state.global_step = resumed_step
    else:
        if resume_from is not None:
            logger.info("resuming from %s", resume_from)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.perf_counter() - started
    stop, tripped = callbacks.stop, callbacks.health.trip
    if stop.stopped_early_by is None and tripped is None:
        save_final_model(trainer, options)
        callbacks.tracking.log_final_model(output_dir)
        push_final_model(config, output_dir, is_main_process=is_main_process)  # the saved (merged) model; a Hub failure: RunError
    elif stop.stopped_early_by is not None:  # a health stop is reported by the caller (exit code 3)
        logger.warning(
            "stopped by signal %s at step %d; checkpoint saved, run again to resume",
            stop.stopped_early_by,
            trainer.state.global_step,
        )
    return TrainResult(
        output_dir=output_dir,
        global_step=trainer.state.global_step,
        resumed_from=resume_from,
        train_seconds=train_seconds,
        metrics_path=output_dir / METRICS_FILE,
        reward_failures={name: count for name, count in summed_over_ranks(reward_set.failure_counts()).items() if count},
        stopped_by_signal=stop.stopped_early_by,
        stopped_by_health=tripped,
        resumed_step=resumed_step,
        is_main_process=is_main_process,
    )
