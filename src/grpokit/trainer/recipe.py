"""The GRPO recipe: config -> data -> model -> rewards -> TRL GRPOTrainer -> saved model.

`train(config)` reads top to bottom: build rewards, load data (checked against the rewards before any
model is loaded), load model and tokenizer, build TRL's trainer, resume if a complete checkpoint
exists, train, save the model and the resolved config.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from grpokit.compat.trl_internals import load_checkpoint_weights
from grpokit.config.loading import save_resolved_config
from grpokit.config.schema import RunConfig
from grpokit.data.loading import LoadedData
from grpokit.errors import ConfigError
from grpokit.model.loading import (
    check_lora_targets,
    load_model,
    load_tokenizer,
    lora_config,
    model_context_length,
)
from grpokit.model.quantization import float32_adapters_on_cpu
from grpokit.outputs.before_after import before_after_callback
from grpokit.outputs.checkpoints import (
    CheckpointMarkerCallback,
    checkpoint_global_step,
    resume_checkpoint,
    set_aside_later_checkpoints,
)
from grpokit.outputs.files import BEFORE_AFTER_FILE, METRICS_FILE, SAMPLE_COMPLETIONS_FILE
from grpokit.outputs.fs_faults import filesystem_faults
from grpokit.outputs.hub import push_final_model
from grpokit.outputs.metrics import MetricsJsonlCallback, SampleCompletionsCallback
from grpokit.outputs.run_info import options_line, record_run_start
from grpokit.outputs.run_lock import run_lock
from grpokit.outputs.saving import save_final_model
from grpokit.outputs.tracking import attach_tracking, log_final_model
from grpokit.pipeline import bound_run_prompts, build_reward_set, load_run_data
from grpokit.rewards.failure_counts import FailureCountsAcrossRanks, summed_over_ranks
from grpokit.rewards.reward_set import RewardSet
from grpokit.rewards.spread import RewardSpreadCallback
from grpokit.trainer.callbacks import GracefulStopCallback, LastStepLogCallback, RichProgressCallback
from grpokit.trainer.health import HealthTrip, attach_health, health_trip

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


def grpo_args_for(config: RunConfig, reward_set: RewardSet):
    """TRL's GRPOConfig with the reward weights from the `rewards:` list."""
    if "reward_weights" in config.trl_args:
        raise ConfigError(
            "reward_weights is set, but grpokit takes each reward's weight from the rewards: list",
            where=config.source,
            fix="remove reward_weights and give each reward a weight: in rewards:",
        )
    args = config.to_grpo_config()
    args.reward_weights = list(reward_set.weights)
    return args


def build_trainer(
    config: RunConfig,
    data: LoadedData,
    reward_set: RewardSet,
    tokenizer,
    *,
    console=None,
    extra_callbacks: list | None = None,
):
    """Load the model, then TRL's GRPOTrainer with `tokenizer` and grpokit's callbacks.

    `extra_callbacks` come first, so their `on_log` can add keys that metrics.jsonl then records.
    """
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from grpokit.trainer.dynamic_sampling import trainer_class_for

    options = config.options
    args = grpo_args_for(config, reward_set)
    model = load_model(options, gradient_checkpointing=args.gradient_checkpointing, fsdp=bool(args.fsdp))
    check_lora_targets(options, model)
    output_dir = Path(options.output_dir)
    stop = GracefulStopCallback(timeout=options.stop_timeout)
    failure_counts = FailureCountsAcrossRanks(reward_set.failure_counts)  # summed over ranks at every log
    trainer_class, trainer_kwargs = trainer_class_for(options.dynamic_sampling)  # TRL's, or with dynamic sampling
    trainer = trainer_class(
        model=model,
        reward_funcs=reward_set.funcs,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.test,
        processing_class=tokenizer,
        peft_config=lora_config(options),
        callbacks=[
            *(extra_callbacks or []),
            failure_counts,
            MetricsJsonlCallback(output_dir / METRICS_FILE, failure_counts=failure_counts),
            CheckpointMarkerCallback(),
            stop,
            LastStepLogCallback(),  # after the graceful stop: a stopped run's last step is logged too
        ],
        **trainer_kwargs,
    )
    float32_adapters_on_cpu(trainer.model)  # TRL made a quantized model's adapters bfloat16: slow and coarse on a CPU
    trainer.callback_handler.callbacks.insert(0, RewardSpreadCallback(trainer))  # first: its keys reach every log
    attach_health(trainer, options.health, output_dir)  # health checks after it, the hang watchdog last
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(RichProgressCallback(console))
    trainer.add_callback(
        SampleCompletionsCallback(
            trainer,
            output_dir / SAMPLE_COMPLETIONS_FILE,
            weights=dict(zip(reward_set.names, reward_set.weights)),
            every=options.log_completions_every,
        )
    )
    if options.log_completions_every > 0:  # the same prompts answered before and after training, for the report
        trainer.add_callback(before_after_callback(trainer, reward_set, tokenizer, output_dir / BEFORE_AFTER_FILE))
    tracking = attach_tracking(trainer, config, data.train, stopped_by_signal=lambda: stop.stopped_early_by)
    stop.before_forced_exit.append(tracking.end_stopped_by_signal)  # a second signal or a stuck step: KILLED
    return trainer


def train(config: RunConfig, *, console=None, extra_callbacks: list | None = None) -> TrainResult:
    """Run GRPO as configured and save the result. Raises `GrpokitError` subclasses on bad input.

    One run at a time per output_dir (`outputs.run_lock`: a second one is `RunLockedError`, exit 2);
    the output folders are checked writable first, and a full disk or a read-only folder during the run
    is one `FilesystemError` naming the path (`outputs.fs_faults`); the run resumes once it is fixed.
    """
    options = config.options
    with filesystem_faults(options.output_dir, options.resolved_checkpoint_dir), run_lock(options.output_dir):
        return _train(config, console=console, extra_callbacks=extra_callbacks)


def _train(config: RunConfig, *, console=None, extra_callbacks: list | None = None) -> TrainResult:
    options = config.options
    if config.trl_args.get("hub_token"):  # kept out of GRPOConfig (pickled into checkpoints); the Hub reads HF_TOKEN
        os.environ.setdefault("HF_TOKEN", config.trl_args["hub_token"])
    reward_set = build_reward_set(config)
    data = load_run_data(config, reward_set)
    logger.info("%s", data.description)
    tokenizer = load_tokenizer(options)  # once: for the prompt limits and for the trainer
    data, prompt_lengths = bound_run_prompts(
        config, data, tokenizer, model_context=model_context_length(options)
    )  # no prompt longer than max_prompt_length reaches generation
    for line in prompt_lengths:
        logger.info("%s", line)
    resume_from = resume_checkpoint(options.resume, options.resolved_checkpoint_dir)
    trainer = build_trainer(config, data, reward_set, tokenizer, console=console, extra_callbacks=extra_callbacks)
    output_dir = Path(options.output_dir)
    resumed_step = checkpoint_global_step(resume_from) if resume_from is not None else 0
    if trainer.is_world_process_zero():
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
    stop = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, GracefulStopCallback))
    tripped = health_trip(trainer)
    if stop.stopped_early_by is None and tripped is None:
        save_final_model(trainer, options)
        log_final_model(trainer, output_dir)
        push_final_model(trainer, config, output_dir)  # push_to_hub: the saved (merged) model; a Hub failure: RunError
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
    )
