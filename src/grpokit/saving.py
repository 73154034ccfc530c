"""Saving the trained model: the LoRA adapter (default) or a merged model, in safetensors, with the tokenizer.

The files are written to a staging directory and moved into `output_dir` only once complete, so a
crash while saving never leaves a half-written model where a loader would find it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from grpokit.config import GrpokitOptions

logger = logging.getLogger("grpokit.saving")

STAGING_DIR = ".model-staging"
PICKLED_FILES = ("training_args.bin",)  # the Trainer pickles its args; grpokit ships safetensors and JSON only


def _is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def _merged_model(trainer, options: GrpokitOptions, staging: Path):
    """The base model with the adapter folded in. A 4-bit base is reloaded unquantized to merge into."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not options.load_in_4bit:
        return model.merge_and_unload()
    from peft import PeftModel

    from grpokit.model import load_model

    adapter_dir = staging / "adapter"
    model.save_pretrained(adapter_dir, safe_serialization=True)
    unquantized = options.model_copy(update={"load_in_4bit": False})
    base = load_model(unquantized, gradient_checkpointing=False)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    shutil.rmtree(adapter_dir)
    return merged


def save_final_model(trainer, options: GrpokitOptions) -> Path:
    """Save adapter or merged model plus tokenizer into `options.output_dir`; returns that directory."""
    output_dir = Path(options.output_dir)
    staging = output_dir / STAGING_DIR
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    merge = options.merge_weights and _is_peft_model(unwrapped)
    if not merge:
        trainer.save_model(str(staging))  # gathers sharded weights; writes on the main process only
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return output_dir
    if merge:
        _merged_model(trainer, options, staging).save_pretrained(staging, safe_serialization=True)
        trainer.processing_class.save_pretrained(staging)
    for name in PICKLED_FILES:
        (staging / name).unlink(missing_ok=True)
    for path in staging.iterdir():
        os.replace(path, output_dir / path.name)
    staging.rmdir()
    logger.info("saved %s to %s", "merged model" if merge else "adapter" if _is_peft_model(unwrapped) else "model", output_dir)
    return output_dir
