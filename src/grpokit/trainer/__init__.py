"""The training recipe: `train(config)` builds TRL's GRPOTrainer from the pipeline's stages and runs it.

| module | owns |
|---|---|
| `recipe` | `train(config) -> TrainResult`, read top to bottom |
| `run_callbacks` | every callback of a run, built in one function, named, in run order (`RunCallbacks`) |
| `callbacks` | the progress bar and the graceful stop on SIGTERM / Ctrl-C |
| `reward_callbacks` | per-reward zero spread in each log; `on_error: zero` failures summed over ranks |
| `health`, `health_checks` | the health checks (options in `grpokit.config.health`) and what they do when one fires |
| `watchdog`, `stacks` | the hang watchdog (`health.hang`): every rank's Python stacks, exit code 4 |
| `dynamic_sampling/` | dynamic sampling: only groups with reward spread reach the optimizer (`trainer`, `rounds`) |
"""

from grpokit.trainer.recipe import TrainResult, train

__all__ = ["TrainResult", "train"]
