"""The `reward_model` reward with a tiny Qwen2 sequence-classification model built from a config."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from grpokit.config import load_config
from grpokit.errors import RewardConfigError
from grpokit.pipeline import build_reward_set
from grpokit.rewards import build_reward


def direct_scores(directory: Path, texts: list[str]) -> list[float]:
    """The model's logit per text, one text at a time (no padding), worked out without the reward."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.inference_mode():
        return [model(**tokenizer(text, return_tensors="pt")).logits[0, 0].item() for text in texts]


def test_scores_are_the_models_logits_in_batches(tiny_reward_model):
    reward = build_reward("reward_model", model_name_or_path=str(tiny_reward_model), batch_size=2, device="cpu")
    assert reward.__name__ == "reward_model"
    prompts = ["1+1=", "2+2=", "3+3=", "héllo 猫"]
    completions = ["2", [{"role": "assistant", "content": "4"}], "", "wörld"]
    scores = reward(prompts=prompts, completions=completions)
    texts = ["1+1=2", "2+2=4", "3+3=", "héllo 猫wörld"]
    # Padded batches of 2 give the same logits as one text at a time.
    assert scores == pytest.approx(direct_scores(tiny_reward_model, texts), abs=1e-4)
    assert len({round(s, 6) for s in scores}) > 1  # the model tells texts apart
    assert pickle.loads(pickle.dumps(reward)).model is None  # the loaded model is not pickled


def test_chat_prompts_use_the_chat_template_and_truncation_keeps_the_end(tiny_reward_model):
    reward = build_reward("reward_model", model_name_or_path=str(tiny_reward_model), device="cpu", max_length=8)
    prompt = [{"role": "user", "content": "a long question " * 10}]
    [score] = reward(prompts=[prompt], completions=[[{"role": "assistant", "content": "answer"}]])
    rendered = reward.tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": "answer"}], tokenize=False
    )
    assert rendered.startswith("<|im_start|>user")
    last_8 = reward.tokenizer.decode(reward.tokenizer(rendered)["input_ids"][-8:])
    assert score == pytest.approx(direct_scores(tiny_reward_model, [last_8])[0], abs=1e-4)


def test_a_missing_model_is_a_clear_error():
    reward = build_reward("reward_model", model_name_or_path="/nonexistent/reward-model")
    with pytest.raises(RewardConfigError, match="could not load the reward model '/nonexistent/reward-model'"):
        reward(prompts=["Q"], completions=["A"])


def test_score_index_beyond_the_labels_is_an_error(tiny_reward_model):
    reward = build_reward("reward_model", model_name_or_path=str(tiny_reward_model), score_index=1, device="cpu")
    with pytest.raises(RewardConfigError, match="score_index 1 but the model has 1 label"):
        reward(prompts=["Q"], completions=["A"])


def test_reward_model_name_or_path_adds_a_reward(tiny_config, tiny_reward_model):
    config = load_config(data={**tiny_config, "reward_model_name_or_path": str(tiny_reward_model)})
    reward_set = build_reward_set(config)
    assert reward_set.names == ["rouge_l", "length", "reward_model"]
    assert reward_set.weights == [1.0, 1.0, 1.0]
    assert reward_set.funcs[-1].reward.model_name_or_path == str(tiny_reward_model)
