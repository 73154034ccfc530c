"""The training recipe: `train(config)` builds TRL's GRPOTrainer from the pipeline's stages and runs it.

| module | owns |
|---|---|
| `recipe` | `train(config) -> TrainResult`, read top to bottom |
| `callbacks` | the progress bar and the graceful stop on SIGTERM / Ctrl-C |
| `health`, `health_checks` | the health checks (options in `grpokit.config.health`) and what they do when one fires |
| `watchdog`, `stacks` | the hang watchdog (`health.hang`): every rank's Python stacks, exit code 4 |
| `dynamic_sampling`, `generation_rounds` | dynamic sampling: only groups with reward spread reach the optimizer |
"""

from grpokit.trainer.recipe import TrainResult, train

__all__ = ["TrainResult", "train"]
