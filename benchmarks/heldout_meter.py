"""Training CPU seconds and generated tokens per step, held-out evaluations left out (data_efficiency, time_to_target)."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from grpokit.commands.demo import HeldoutAccuracyCallback


class Meter(TrainerCallback):
    """Per step: TRL's running count of tokens through generation, and this process's CPU seconds of training.

    CPU seconds (`time.process_time`) count the work this process did, which other processes on a
    shared machine slow down far less than they stretch wall-clock time. The held-out evaluation's CPU
    time is left out: `EvalCpu` instances placed just before and after the evaluation callback time it.
    """

    def __init__(self) -> None:
        self.tokens: dict[int, int] = {0: 0}
        self.cpu: dict[int, float] = {0: 0.0}  # training CPU seconds when the step's evaluation started
        self.started = 0.0
        self.eval_cpu = 0.0
        self.eval_started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.tokens[state.global_step] = int(state.num_input_tokens_seen)

    def before_eval(self, step: int) -> None:
        self.eval_started = time.process_time()
        self.cpu[step] = self.eval_started - self.started - self.eval_cpu

    def after_eval(self) -> None:
        self.eval_cpu += time.process_time() - (self.eval_started or time.process_time())


class EvalCpu(TrainerCallback):
    """Marks the start (`before=True`) or end of the held-out evaluation in a step's `on_log`."""

    def __init__(self, meter: Meter, *, before: bool) -> None:
        self.meter, self.before = meter, before

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "train_runtime" in logs:
            return
        if self.before:
            self.meter.before_eval(state.global_step)
        else:
            self.meter.after_eval()


def measured_callbacks(heldout: HeldoutAccuracyCallback) -> tuple[Meter, list[TrainerCallback]]:
    """A Meter for `heldout`'s run and the callbacks to pass to the trainer, in their order."""
    meter = Meter()
    return meter, [meter, EvalCpu(meter, before=True), heldout, EvalCpu(meter, before=False)]
