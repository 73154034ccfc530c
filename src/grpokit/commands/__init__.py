"""Commands built on the pipeline: `grpokit validate`, `rewards`, `eval` and `demo`.

They use the pipeline's stages (`grpokit.pipeline`, `config`, `data`, `model`, `rewards`); only the
demo runs the training recipe itself, through `grpokit.trainer.train`.
"""
