"""`builtin:tiny-chat` ships in the package, loads offline, and TRL accepts its template and tool calls."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported; local_files_only below too
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from grpokit.model.builtin import BUILTIN_PREFIX, list_builtin_models, resolve_model_path
from grpokit.tasks import tool_task
from grpokit.tasks.chat_tokenizer import TAG_TOKENS

CALL_TEXT = '<tool_call>\n{"name": "multiply", "arguments": {"a": 347, "b": 129}}\n</tool_call><|im_end|>'
PARSED_CALL = [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 347, "b": 129}}}]


@pytest.fixture(scope="module")
def chat_dir() -> str:
    return resolve_model_path("builtin:tiny-chat")


@pytest.fixture
def tokenizer(chat_dir):
    return AutoTokenizer.from_pretrained(chat_dir, local_files_only=True)


@pytest.fixture(scope="module")
def model(chat_dir):
    return AutoModelForCausalLM.from_pretrained(chat_dir, local_files_only=True)


def test_the_packaged_folder_is_complete_and_small(chat_dir):
    files = set(os.listdir(chat_dir))
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "README.md",
    } <= files
    assert sum(os.path.getsize(os.path.join(chat_dir, name)) for name in files) < 8_000_000


def test_listed_with_the_parameter_count_from_the_header(model):
    (chat,) = [entry for entry in list_builtin_models() if entry.name == BUILTIN_PREFIX + "tiny-chat"]
    assert chat.num_parameters == model.num_parameters()
    assert 800_000 < chat.num_parameters < 1_500_000
    assert chat.build_module == "build_chat" and "tool" in chat.description


def test_loads_in_float32_with_the_qwen2_tokenizer(model, tokenizer):
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tokenizer) == model.config.vocab_size


@pytest.mark.parametrize("text", ["héllo ✓ 日本", "What is 347 * 129?", " two  spaces\n\ttab", "🙂", "\x00\x7f", ""])
def test_any_text_round_trips_and_both_loaders_agree(tokenizer, chat_dir, text):
    generic = PreTrainedTokenizerFast.from_pretrained(chat_dir, local_files_only=True)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert generic.encode(text, add_special_tokens=False) == ids


def test_digits_are_one_token_each_and_words_are_merged(tokenizer):
    assert tokenizer.tokenize("347") == ["3", "4", "7"]
    assert len(tokenizer.encode("You may call one or more functions", add_special_tokens=False)) == 7


def test_special_and_tag_tokens(tokenizer, model):
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    for tag in TAG_TOKENS:  # one id each, kept when decoding with skip_special_tokens
        (tag_id,) = tokenizer.encode(tag, add_special_tokens=False)
        assert tokenizer.decode([tag_id], skip_special_tokens=True) == tag
    assert model.generation_config.eos_token_id == [2, 0]
    assert model.generation_config.pad_token_id == 0


def test_the_template_is_trls_qwen2_5_and_passes_trls_checks(tokenizer):
    from trl.chat_template_utils import (
        is_chat_template_prefix_preserving,
        qwen2_5_chat_template,
        supports_tool_calling,
    )

    assert tokenizer.chat_template == qwen2_5_chat_template  # TRL recognises templates by their text
    assert supports_tool_calling(tokenizer)
    assert is_chat_template_prefix_preserving(tokenizer)


def test_trl_parses_a_tool_call_and_plain_text(tokenizer):
    from trl.chat_template_utils import add_response_schema, parse_response

    add_response_schema(tokenizer)
    prefix = tokenizer.apply_chat_template(
        tool_task.MultiplicationProblem(347, 129).prompt(),
        tools=list(tool_task.TOOLS),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    parsed = parse_response(tokenizer, tokenizer.encode(CALL_TEXT, add_special_tokens=False), prefix=prefix)
    assert parsed["tool_calls"] == PARSED_CALL
    answer = tokenizer.encode("The answer is 44763.<|im_end|>", add_special_tokens=False)
    assert parse_response(tokenizer, answer, prefix=prefix) == {"role": "assistant", "content": "The answer is 44763."}


def test_the_tool_prompt_is_short_in_tokens(tokenizer):
    ids = tokenizer.apply_chat_template(
        tool_task.MultiplicationProblem(347, 129).prompt(),
        tools=list(tool_task.TOOLS),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    rendered = tokenizer.decode(ids)
    assert "<tools>" in rendered and '"name": "multiply"' in rendered
    assert len(ids) < 230 < len(rendered.encode("utf-8")) / 3


@pytest.mark.slow
def test_the_warm_started_model_sometimes_calls_the_tool_and_copies_its_result(model, tokenizer):
    problems = tool_task.heldout_problems(16)
    sampled = tool_task.measure_tool_use(model, tokenizer, problems, num_samples=4, temperature=1.0, seed=0)
    assert 0.1 <= sampled.tool_call_rate <= 0.6
    assert sampled.accuracy <= sampled.tool_call_rate  # right answers come from the tool
    calling = [c for per_prompt in sampled.completions for c in per_prompt if tool_task.count_tool_calls(c)]
    assert calling and calling[0][1]["role"] == "tool"
    again = tool_task.measure_tool_use(model, tokenizer, problems, num_samples=4, temperature=1.0, seed=0)
    assert again == sampled  # seeded: the same figures and completions every time


@pytest.mark.slow
def test_a_tool_that_raises_is_a_counted_failure_not_a_crash(model, tokenizer):
    from grpokit.model.tool_loop import generate_with_tools

    def multiply(a: int, b: int) -> int:
        """Multiply two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        raise RuntimeError("calculator is out of battery")

    prompts = [problem.prompt() for problem in tool_task.heldout_problems(8)]
    rollouts = generate_with_tools(
        model, tokenizer, prompts, [multiply], num_samples=4, temperature=1.0, seed=0, max_new_tokens=256
    )  # room for the error message
    assert rollouts.tool_calls > 0 and rollouts.tool_failures == rollouts.tool_calls
    tool_messages = [m for per_prompt in rollouts.completions for c in per_prompt for m in c if m["role"] == "tool"]
    assert tool_messages[0]["content"] == "{'error': 'calculator is out of battery'}"


@pytest.mark.slow
def test_grpo_trainer_trains_it_with_the_tool_and_logs_tool_metrics(chat_dir, tmp_path):
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(chat_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(chat_dir, local_files_only=True)
    before = [p.detach().clone() for p in model.parameters()]

    def exact_answer(prompts, completions, answer, **kwargs):
        return [float(tool_task.is_correct(c, a)) for c, a in zip(completions, answer)]

    rows = [problem.row() for problem in tool_task.make_problems(8, seed=0)]
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, max_steps=2, per_device_train_batch_size=8,
        num_generations=8, max_completion_length=64, max_tool_calling_iterations=1, learning_rate=1e-3,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[exact_answer],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        tools=[tool_task.multiply],
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "tools/call_frequency" in entry]
    assert len(logged) == 2
    assert sum(entry["tools/call_frequency"] for entry in logged) > 0  # 16 samples: some call the tool
    assert all(entry["tools/failure_frequency"] == 0 for entry in logged)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
