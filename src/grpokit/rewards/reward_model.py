"""`reward_model`: scores from a local sequence-classification model (a path or a Hugging Face id)."""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any, Literal

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, text_of

logger = logging.getLogger("grpokit.rewards")


@validate_call
def reward_model_reward(
    *,
    model_name_or_path: Annotated[str, Field(min_length=1)],
    tokenizer_name_or_path: str | None = None,
    max_length: Annotated[int, Field(gt=0)] = 1024,
    batch_size: Annotated[int, Field(gt=0)] = 16,
    device: str = "auto",
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    score_index: Annotated[int, Field(ge=0)] = 0,
    truncation_side: Literal["left", "right"] = "left",
    trust_remote_code: bool = False,
    metric_name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$")] = "reward_model",
) -> RewardFunc:
    """The logit of a sequence-classification reward model for prompt + completion.

    The model (`AutoModelForSequenceClassification`) and its tokenizer load on the first call, in
    eval mode and without gradients, so building the reward (and `grpokit validate`) stays cheap. Each
    prompt + completion becomes one text: for chat prompts the tokenizer's chat template renders the
    conversation with the completion as the assistant's message (a tokenizer without a template joins
    the messages' text with newlines); text prompts are concatenated with the completion. Texts are
    scored in batches of `batch_size`, truncated to `max_length` tokens; the score is
    `logits[:, score_index]` as a float (no squashing: a reward model's scale is its own).

    Parameters:
        model_name_or_path: a local directory or a Hugging Face id (HF_TOKEN is used when set).
        tokenizer_name_or_path: where the tokenizer is (default: the model's).
        max_length: tokens per text after truncation.
        batch_size: texts per forward pass.
        device: `auto` (the training process's GPU, `cuda:$LOCAL_RANK`, when CUDA is available, else
            CPU), `cpu`, `cuda` or `cuda:N`.
        dtype: weights dtype (`bfloat16`/`float16` only make sense on a GPU).
        score_index: the logit read (0 for the usual one-label reward model).
        truncation_side: `left` (default) drops the start of a long prompt so the completion, which is
            what is judged, is kept; `right` drops the end.
        trust_remote_code: run model code shipped with the checkpoint.
        metric_name: the metric name (`rewards/<metric_name>/mean`), to tell several models apart.

    Example:
        >>> reward = reward_model_reward(model_name_or_path="OpenAssistant/reward-model-deberta-v3-large-v2")
        >>> reward(prompts=["How do I boil an egg?"], completions=["Put it in boiling water for 8 minutes."])
        [4.2]
    """
    return RewardModel(
        model_name_or_path,
        tokenizer_name_or_path or model_name_or_path,
        max_length,
        batch_size,
        device,
        dtype,
        score_index,
        truncation_side,
        trust_remote_code,
        metric_name,
    )


class RewardModel:
    """The `reward_model` reward. Picklable: the loaded model is dropped and reloaded on first use."""

    required_columns: frozenset[str] = frozenset()

    def __init__(
        self,
        model_name_or_path: str,
        tokenizer_name_or_path: str,
        max_length: int,
        batch_size: int,
        device: str,
        dtype: str,
        score_index: int,
        truncation_side: str,
        trust_remote_code: bool,
        metric_name: str,
    ) -> None:
        self.model_name_or_path = model_name_or_path
        self.tokenizer_name_or_path = tokenizer_name_or_path
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.score_index = score_index
        self.truncation_side = truncation_side
        self.trust_remote_code = trust_remote_code
        self.__name__ = metric_name
        self.model = None
        self.tokenizer = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "model": None, "tokenizer": None}

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        import torch

        if self.model is None:
            self.load()
        texts = [self.text_for(prompt, completion) for prompt, completion in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                inputs = self.tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                ).to(self.model.device)
                logits = self.model(**inputs).logits  # [batch, num_labels]
                scores.extend(logits[:, self.score_index].float().tolist())
        return scores

    def text_for(self, prompt: Any, completion: Any) -> str:
        if isinstance(prompt, list):
            messages = [*prompt, {"role": "assistant", "content": text_of(completion)}]
            if getattr(self.tokenizer, "chat_template", None):
                return self.tokenizer.apply_chat_template(messages, tokenize=False)
            return "\n".join(text_of([{"content": message.get("content")}]) for message in messages)
        return str(prompt) + text_of(completion)

    def load(self) -> None:
        """Load tokenizer and model onto the configured device. Raises `RewardConfigError` when they cannot load."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from grpokit.model.builtin import resolve_model_path

        token = {"token": os.environ["HF_TOKEN"]} if os.environ.get("HF_TOKEN") else {}
        common = {"trust_remote_code": self.trust_remote_code, **token}
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(self.tokenizer_name_or_path), **common)
            model, loading_info = AutoModelForSequenceClassification.from_pretrained(
                resolve_model_path(self.model_name_or_path),
                dtype=getattr(torch, self.dtype),
                output_loading_info=True,
                **common,
            )
        except (OSError, ValueError) as error:
            raise RewardConfigError(
                f'reward "{self.__name__}": could not load the reward model {self.model_name_or_path!r}: {error}',
                fix="give a local directory or Hugging Face id of a sequence-classification model "
                "(AutoModelForSequenceClassification); gated models need HF_TOKEN",
            ) from None
        warn_if_untrained_head(self.__name__, self.model_name_or_path, model, loading_info)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.truncation_side = self.truncation_side
        tokenizer.padding_side = "right"
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id  # needed to find each row's last token
        if self.score_index >= model.config.num_labels:
            raise RewardConfigError(
                f'reward "{self.__name__}": score_index {self.score_index} but the model has '
                f"{model.config.num_labels} label(s)",
                fix=f"use a score_index below {model.config.num_labels}",
            )
        self.model = model.to(self.resolved_device()).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        logger.info('reward "%s": loaded %s on %s', self.__name__, self.model_name_or_path, self.model.device)

    def resolved_device(self) -> str:
        import torch

        if self.device != "auto":
            return self.device
        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        return "cpu"


def warn_if_untrained_head(reward_name: str, model_name_or_path: str, model, loading_info: dict) -> bool:
    """Warn when the checkpoint has no trained score head (a causal LM given as a reward model); True if so.

    transformers then initialises the head at random, so every score is noise: GRPO learns nothing
    (the AWS sample's accelerate notebook passes `Qwen/Qwen2-72B-Instruct-AWQ`, a causal LM, this way).
    """
    missing = sorted(loading_info.get("missing_keys", ()))
    architectures = list(getattr(model.config, "architectures", None) or [])
    if not missing:
        return False
    if os.environ.get("RANK", "0") != "0":  # once per job, not once per rank
        return True
    saved_as = f" (saved as {', '.join(architectures)})" if architectures else ""
    logger.warning(
        'reward "%s": %s is not a trained reward model%s: its head %s is initialised at random, so its scores '
        "are noise and GRPO learns nothing from them; use a sequence-classification reward model (e.g. one trained "
        "with TRL's RewardTrainer), or a judge through the `http` reward",
        reward_name,
        model_name_or_path,
        saved_as,
        ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else ""),
    )
    return True
