"""`push_to_hub: true`: the final model (the merged model with `merge_weights: true`) pushed to the Hub once.

transformers' Trainer pushes each checkpoint as it is saved (with LoRA: only the adapter) and never
the model grpokit merges afterwards; a Hub failure then surfaces as a traceback from a background
upload. grpokit turns the Trainer's pushing off (`RunConfig.grpo_config_kwargs` drops `push_to_hub`) and,
after the final model is saved, uploads that folder's model files in one commit:

| TRL field | meaning here |
|---|---|
| `push_to_hub` | push the final model (adapter, or merged model with `merge_weights: true`) |
| `hub_model_id` | the repository (default: the last part of `output_dir`, as transformers does) |
| `hub_private_repo` | create it private |
| `hub_revision` | the branch to commit to |
| `hub_token` | the token (prefer `HF_TOKEN`) |

A Hub failure (no network, no write access, a bad repo id) is one `RunError` (exit 1) saying what
failed; the model stays saved in `output_dir`, with the command that uploads it later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from grpokit.config.schema import HubSettings, RunConfig
from grpokit.errors import RunError
from grpokit.outputs.files import CONFIG_FILE

logger = logging.getLogger("grpokit.hub")

# The files of a saved model (and its tokenizer) that go to the Hub; metrics, reports and checkpoints stay.
MODEL_FILE_GLOBS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template*",
    "vocab*",
    "merges.txt",
    "*.model",
    CONFIG_FILE,  # the resolved config, secrets masked: how the model was trained
]
CHECKPOINT_STRATEGIES = ("checkpoint", "all_checkpoints")


@dataclass(frozen=True)
class HubPush:
    """Where `push_to_hub` sends the final model."""

    repo_id: str
    private: bool | None = None
    revision: str | None = None


def hub_push_for(hub: HubSettings, output_dir: str | Path) -> HubPush | None:
    """The push a config asks for (`push_to_hub` and the `hub_*` fields), or None."""
    if not hub.push:
        return None
    if hub.strategy in CHECKPOINT_STRATEGIES:
        logger.warning(
            "hub_strategy: %s: grpokit pushes the final model only; checkpoints stay in the checkpoint directory",
            hub.strategy,
        )
    repo_id = hub.model_id or Path(output_dir).resolve().name
    return HubPush(repo_id=repo_id, private=hub.private, revision=hub.revision)


def push_model_folder(model_dir: str | Path, push: HubPush, *, token: str | None) -> str:
    """Upload the model files of `model_dir` to `push.repo_id` as one commit; returns the commit URL.

    Raises:
        RunError: the repository could not be created or the upload failed (network, permission, a
            bad repo id); the message names the repo and says the model is still in `model_dir`.
    """
    import httpx2  # huggingface_hub 2.x's HTTP client: its connection and HTTP errors derive from httpx2.HTTPError
    from huggingface_hub import HfApi

    model_dir = Path(model_dir)
    api = HfApi(token=token)
    try:
        api.create_repo(push.repo_id, private=push.private, exist_ok=True)
        if push.revision:
            api.create_branch(push.repo_id, branch=push.revision, exist_ok=True)
        info = api.upload_folder(
            repo_id=push.repo_id,
            folder_path=str(model_dir),
            allow_patterns=MODEL_FILE_GLOBS,
            ignore_patterns=["*/*"],  # top-level files only: checkpoints/, wandb/, eval/ stay (fnmatch's * spans "/")
            revision=push.revision,
            commit_message="grpokit: final model",
        )
    except (httpx2.HTTPError, OSError, ValueError) as error:  # HTTP / connection, offline mode, a bad repo id
        raise RunError(
            f"could not push the model to the Hugging Face Hub repo {push.repo_id!r}: {type(error).__name__}: "
            f"{_first_line(error)}",
            where=str(model_dir),
            fix=f"the model is saved in {model_dir}; check HF_TOKEN (write access) and hub_model_id, then upload it "
            f"with `hf upload {push.repo_id} {model_dir}`",
        ) from None
    logger.info("pushed %s to the Hub: %s", model_dir, info.commit_url)
    return info.commit_url


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


def push_final_model(config: RunConfig, model_dir: str | Path, *, is_main_process: bool) -> str | None:
    """After the final save: push `model_dir` when the config asks (main process only). Returns the commit URL."""
    push = hub_push_for(config.hub, config.options.output_dir)
    if push is None or not is_main_process:
        return None
    from grpokit.model.loading import hf_token

    return push_model_folder(model_dir, push, token=hf_token(config.options))
