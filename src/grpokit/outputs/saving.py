"""Saving the trained model: the LoRA adapter (default) or a merged model, in safetensors, with the tokenizer;
and the resolved config next to it (`grpokit_config.yaml`, secrets masked).

The files are written to a staging directory and moved into `output_dir` only once complete, so a
crash while saving never leaves a half-written model where a loader would find it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import yaml

from grpokit.config.schema import GrpokitOptions, RunConfig
from grpokit.model.loading import load_model, torch_dtype
from grpokit.model.quantization import dequantized, quantized_bits
from grpokit.outputs.files import CONFIG_FILE, MODEL_STAGING_DIR, atomic_write_text, publish_staged

logger = logging.getLogger("grpokit.saving")

PICKLED_FILES = ("training_args.bin",)  # the Trainer pickles its args; grpokit ships safetensors and JSON only


def _is_peft_model(model) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


# What a saved model may consist of; a new save removes these when it does not write them itself,
# so an adapter left from an earlier run is never loaded on top of a merged model (or the reverse).
MODEL_FILE_PATTERNS = ("adapter_config.json", "adapter_model*", "model*.safetensors*", "config.json", "generation_config.json")


def _merge_by_reloading(adapter_dir: Path, options: GrpokitOptions):
    """Reload the base model unsharded, and fold the saved adapter into it.

    An adapter trained on a 4-bit (or 8-bit) base learned corrections to the quantized weights, so it
    is merged into those weights dequantized, not into the original ones: the merged model's greedy
    outputs are then the adapter-on-quantized-base outputs (tests/test_qlora.py measures how close).
    """
    import torch
    from peft import PeftModel

    base = load_model(options, gradient_checkpointing=False)
    if quantized_bits(options):
        base = dequantized(base, torch_dtype(options, has_cuda=torch.cuda.is_available()))
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def _remove_stale_model_files(output_dir: Path, written: set[str]) -> None:
    for pattern in MODEL_FILE_PATTERNS:
        for path in output_dir.glob(pattern):
            if path.is_file() and path.name not in written:
                path.unlink()


def save_final_model(trainer, options: GrpokitOptions) -> Path:
    """Save adapter or merged model plus tokenizer into `options.output_dir`; returns that directory.

    A merge folds the adapter into the base weights. When the trained model is 4-bit or sharded
    (FSDP, DeepSpeed ZeRO), its weights cannot be merged in place: every rank saves the adapter
    (gathering the shards), then the main process reloads the base model whole and merges into it.
    """
    output_dir = Path(options.output_dir)
    staging = output_dir / MODEL_STAGING_DIR
    if trainer.is_world_process_zero() and staging.exists():
        shutil.rmtree(staging)  # left by a save that crashed
    trainer.accelerator.wait_for_everyone()
    if trainer.is_fsdp_enabled:
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    merge = options.merge_weights and _is_peft_model(unwrapped)
    quantized = options.load_in_4bit or options.load_in_8bit
    merge_by_reloading = merge and (quantized or trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled)
    adapter_dir = staging / "adapter"
    if not merge:
        trainer.save_model(str(staging))  # gathers sharded weights; writes on the main process only
    elif merge_by_reloading:
        trainer.save_model(str(adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if not trainer.is_world_process_zero():
        return output_dir
    if merge:
        merged = _merge_by_reloading(adapter_dir, options) if merge_by_reloading else unwrapped.merge_and_unload()
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        merged.save_pretrained(staging, safe_serialization=True)
        trainer.processing_class.save_pretrained(staging)
    for name in PICKLED_FILES:
        (staging / name).unlink(missing_ok=True)
    written = {path.name for path in staging.iterdir()}
    _remove_stale_model_files(output_dir, written)
    publish_staged(staging, output_dir)
    logger.info("saved %s to %s", "merged model" if merge else "adapter" if _is_peft_model(unwrapped) else "model", output_dir)
    return output_dir


def save_resolved_config(config: RunConfig, directory: str | Path) -> Path:
    """Write `grpokit_config.yaml` (the resolved config, secrets masked) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    return atomic_write_text(directory / CONFIG_FILE, text)
