"""`builtin:tiny` ships in the package, loads offline, encodes any text and half-knows addition."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported; local_files_only below too

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from grpokit.errors import ConfigError
from grpokit.model.builtin import BUILTIN_PREFIX, list_builtin_models, resolve_model_path
from grpokit.tasks import addition


@pytest.fixture(scope="module")
def tiny_dir() -> str:
    return resolve_model_path("builtin:tiny")


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)


@pytest.fixture(scope="module")
def model(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir, local_files_only=True)


def test_resolve_returns_the_packaged_folder(tiny_dir):
    files = set(os.listdir(tiny_dir))
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
    } <= files
    size_bytes = sum(os.path.getsize(os.path.join(tiny_dir, name)) for name in files)
    assert size_bytes < 5_000_000


@pytest.mark.parametrize("model_id", ["Qwen/Qwen2.5-0.5B-Instruct", "./my-model", "/abs/path", "tiny"])
def test_resolve_leaves_other_ids_unchanged(model_id):
    assert resolve_model_path(model_id) == model_id


@pytest.mark.parametrize("model_id", ["builtin:huge", "builtin:", "builtin:Tiny"])
def test_unknown_builtin_raises_config_error_naming_the_known_ones(model_id):
    with pytest.raises(ConfigError) as raised:
        resolve_model_path(model_id)
    assert model_id in raised.value.message
    assert "builtin:tiny" in raised.value.message
    assert raised.value.exit_code == 2


def test_list_reports_the_parameter_count_from_the_header(model):
    (tiny,) = [entry for entry in list_builtin_models() if entry.name == BUILTIN_PREFIX + "tiny"]
    assert tiny.num_parameters == model.num_parameters()
    assert 800_000 < tiny.num_parameters < 1_000_000
    assert tiny.description


@pytest.mark.parametrize("text", ["héllo ✓ 日本", "12+34=", " two  spaces\n\ttab", "🙂", "\x00\x7f", ""])
def test_tokenizer_round_trips_any_unicode_byte_by_byte(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == list(text.encode("utf-8"))  # ids 0..255 are the bytes themselves
    assert tokenizer.decode(ids) == text


def test_tokenizer_normalizes_to_nfc_with_either_loader(tokenizer, tiny_dir):
    # AutoTokenizer loads a qwen2 tokenizer as Qwen2Tokenizer, which always adds NFC; tokenizer.json
    # carries NFC too, so the generic class gives the same ids.
    generic = PreTrainedTokenizerFast.from_pretrained(tiny_dir, local_files_only=True)
    for text in ["e\u0301", "\u212b", "héllo ✓ 日本"]:
        assert tokenizer.encode(text) == generic.encode(text)
    assert tokenizer.decode(tokenizer.encode("e\u0301")) == "\u00e9"


def test_special_tokens(tokenizer, model):
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]) == [
        256,
        257,
        258,
        259,
    ]
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>", "<|pad|>")
    assert len(tokenizer) == model.config.vocab_size == 260
    assert tokenizer.encode("<|im_start|>", add_special_tokens=False) == [257]  # never split into bytes
    assert model.generation_config.eos_token_id == [256, 258]
    assert model.generation_config.pad_token_id == 259


def test_chat_template(tokenizer):
    messages = [
        {"role": "system", "content": "Add."},
        {"role": "user", "content": "12+34="},
        {"role": "assistant", "content": "46"},
        {"role": "user", "content": "日本"},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nAdd.<|im_end|>\n"
        "<|im_start|>user\n12+34=<|im_end|>\n"
        "<|im_start|>assistant\n46<|im_end|>\n"
        "<|im_start|>user\n日本<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without_prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=False)
    assert without_prompt.endswith("12+34=<|im_end|>\n")
    parts = [{"role": "user", "content": [{"type": "text", "text": "12+34="}]}]
    assert tokenizer.apply_chat_template(parts, tokenize=False) == "<|im_start|>user\n12+34=<|im_end|>\n"


def test_greedy_accuracy_on_heldout_problems_is_in_a_sane_band(model, tokenizer):
    problems = addition.heldout_problems(50)
    model.train()
    tokenizer.padding_side = "right"
    result = addition.greedy_accuracy(model, tokenizer, problems, batch_size=16)
    assert 0.3 < result.accuracy < 0.9
    assert result.num_correct == round(result.accuracy * 50)
    assert len(result.completions) == 50
    assert all(completion == completion.strip() for completion in result.completions)  # specials skipped
    assert model.training and tokenizer.padding_side == "right"  # both restored
