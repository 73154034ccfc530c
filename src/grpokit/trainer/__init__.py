"""The training recipe: `train(config)` builds TRL's GRPOTrainer from the pipeline's stages and runs it.

| module | owns |
|---|---|
| `recipe` | `train(config) -> TrainResult`, read top to bottom |
| `callbacks` | the progress bar and the graceful stop on SIGTERM / Ctrl-C |
"""

from grpokit.trainer.recipe import TrainResult, train

__all__ = ["TrainResult", "train"]
