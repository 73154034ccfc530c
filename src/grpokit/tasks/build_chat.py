"""Rebuild `builtin:tiny-chat`: a 1 M parameter Qwen2 chat model for the tools and AWS-sample demos.

    python -m grpokit.tasks.build_chat [--out DIR] [--steps N] [--seconds S]

Steps: render the corpus of both tasks and train the tokenizer's merges (`chat_tokenizer`) ->
random-init the model from a fixed seed -> supervised warm start on the mixture (`chat_corpus`),
tool and format batches alternating, loss on what the model writes -> measure the held-out figures
of both tasks -> round the weights to bfloat16 and save them so (about 2 MB; `config.json` says float32,
so loaders train in float32), the tokenizer and a README to `DIR` (default: the `tiny-chat/` folder
next to this file) -> reload and check TRL accepts the template.

The build stops on a step count, not on wall time, with one thread, so two builds with the same
torch version write the same weights. `--seconds` is only a safety cap for experiments: a build cut
short by it says so and is not the reproducible model.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

from grpokit.tasks import chat_corpus, chat_tokenizer, format_task, tool_task

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "model" / "builtin" / "tiny-chat"
SEED = 4321
TRAIN_STEPS = 2400
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
WARMUP_STEPS = 50
THREADS = 1  # CPU float sums depend on the thread count; one thread keeps rebuilds bit-identical
TOKENIZER_CORPUS_EACH = 2000  # conversations of each task the merges are learned from
VOCAB_SIZE = 1024  # an upper bound: the corpus runs out of merges that occur twice before it
# The warm start first teaches the skills (most tool examples call the tool and copy numbers; half
# the format examples follow the format), then for its last CALIBRATION_STEPS steps sets how often
# the model does each: the share of tool examples that call the tool, of format examples in format.
SKILL_TOOL_SHARE = 0.8
SKILL_FORMAT_SHARE = 0.5
CALIBRATION_STEPS = 300
TOOL_SHARE = 0.3
FORMAT_SHARE = 0.3
SHAPE = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4}
EVAL_PROBLEMS = 64
EVAL_SAMPLES = 4
EVAL_TEMPERATURE = 1.0


@dataclass(frozen=True)
class HeldOut:
    """Held-out figures: greedy (1 sample) and sampled (`EVAL_SAMPLES` at `EVAL_TEMPERATURE`)."""

    tool_greedy: tool_task.ToolUseResult
    tool_sampled: tool_task.ToolUseResult
    format_greedy: format_task.FormatResult
    format_sampled: format_task.FormatResult


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    num_parameters: int
    vocab_size: int
    steps_run: int
    final_losses: dict[str, float]
    heldout: HeldOut
    seconds: float
    complete: bool  # False when --seconds stopped the warm start before its step count


def build_model(tokenizer) -> Qwen2ForCausalLM:
    """Random-init the Qwen2 model (call after seeding). Generation stops at <|im_end|> or <|endoftext|>."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        num_key_value_heads=SHAPE["num_attention_heads"],
        max_position_embeddings=chat_tokenizer.MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPE,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(chat_tokenizer.ENDOFTEXT)],
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def collate(examples: list[chat_corpus.Example], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 where the loss does not look)."""
    width = max(len(example.input_ids) for example in examples)
    input_ids = torch.full((len(examples), width), pad_id)  # [B, T]
    labels = torch.full((len(examples), width), -100)  # [B, T]
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)  # [B, T]
    for row, example in enumerate(examples):
        ids = torch.tensor(example.input_ids)
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
        labels[row, : len(ids)] = torch.where(torch.tensor(example.loss_mask), ids, torch.tensor(-100))
    return input_ids, attention_mask, labels


def batch_loss(model, examples: list[chat_corpus.Example], pad_id: int) -> torch.Tensor:
    """Mean next-token loss over the tokens the model writes, with the shared prefix run once.

    The prefix every example shares (`chat_corpus.shared_prefix_length`) goes through the model as
    one sequence; its keys and values are repeated over the batch and the rest of each example
    attends to them. Same loss as running every example whole, at a fraction of the cost.
    """
    prefix_length = chat_corpus.shared_prefix_length(examples)
    rest = [chat_corpus.Example(e.input_ids[prefix_length:], e.loss_mask[prefix_length:]) for e in examples]
    input_ids, attention_mask, labels = collate(rest, pad_id)  # [B, T] each
    cache = None
    if prefix_length:
        prefix = torch.tensor(examples[0].input_ids[:prefix_length])[None]  # [1, P]
        cache = model(input_ids=prefix, use_cache=True).past_key_values
        cache.batch_repeat_interleave(len(examples))
        attention_mask = torch.cat([torch.ones(len(examples), prefix_length, dtype=torch.long), attention_mask], 1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=False).logits
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1])  # [B * (T - 1), V]
    return torch.nn.functional.cross_entropy(predicted, labels[:, 1:].reshape(-1), ignore_index=-100)


def shares(step: int, steps: int) -> tuple[float, float]:
    """(tool share, format share) at a warm-start step: skills first, the behaviour mix last."""
    if step < steps - CALIBRATION_STEPS:
        return SKILL_TOOL_SHARE, SKILL_FORMAT_SHARE
    return TOOL_SHARE, FORMAT_SHARE


def warm_start(model, tokenizer, *, steps: int, seconds: float | None, log_every: int) -> tuple[int, dict[str, float]]:
    """Supervised training on the mixture. Returns (steps run, last loss of each task)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * max(0.1, 1 - step / steps)
    )
    stream = chat_corpus.batches(
        tokenizer, steps=steps, batch_size=BATCH_SIZE, seed=SEED, shares=lambda step: shares(step, steps)
    )
    model.train()
    started = time.monotonic()
    losses: dict[str, float] = {}
    for step, (task, examples) in enumerate(stream, start=1):
        loss = batch_loss(model, examples, tokenizer.pad_token_id)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses[task] = loss.item()
        elapsed = time.monotonic() - started
        if log_every and step % log_every == 0:
            print(f"step {step:5d}  " + "  ".join(f"{k} loss {v:.4f}" for k, v in losses.items()) + f"  {elapsed:6.1f}s", flush=True)
            print("  " + describe(measure(model, tokenizer, quick=True)), flush=True)
        if seconds is not None and elapsed > seconds and step < steps:
            print(f"stopped by --seconds {seconds} at step {step}/{steps}: NOT the reproducible build")
            return step, losses
    return steps, losses


def measure(model, tokenizer, *, quick: bool = False) -> HeldOut:
    """Held-out figures of both tasks; `quick` measures 16 problems instead of `EVAL_PROBLEMS`."""
    n = 16 if quick else EVAL_PROBLEMS
    tools, formats = tool_task.heldout_problems(n), format_task.heldout_problems(n)
    sampled = {"num_samples": EVAL_SAMPLES, "temperature": EVAL_TEMPERATURE, "seed": 0}
    return HeldOut(
        tool_greedy=tool_task.measure_tool_use(model, tokenizer, tools),
        tool_sampled=tool_task.measure_tool_use(model, tokenizer, tools, **sampled),
        format_greedy=format_task.measure_format(model, tokenizer, formats),
        format_sampled=format_task.measure_format(model, tokenizer, formats, **sampled),
    )


def describe(heldout: HeldOut) -> str:
    t, u, f, g = heldout.tool_greedy, heldout.tool_sampled, heldout.format_greedy, heldout.format_sampled
    return (
        f"tools: greedy acc {t.accuracy:.3f} calls {t.tool_call_rate:.3f} | sampled acc {u.accuracy:.3f} "
        f"calls {u.tool_call_rate:.3f} fail {u.tool_failure_rate:.3f}  ||  format: greedy {f.format_reward:.3f} "
        f"rougeP {f.rouge_l_precision:.3f} | sampled {g.format_reward:.3f} rougeP {g.rouge_l_precision:.3f}"
    )


def check_saved(out_dir: Path) -> None:
    """Reload the saved tokenizer and fail loudly if TRL would reject it or text does not round-trip."""
    from transformers import PreTrainedTokenizerFast
    from trl.chat_template_utils import (
        is_chat_template_prefix_preserving,
        parse_response,
        supports_tool_calling,
    )

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    generic = PreTrainedTokenizerFast.from_pretrained(out_dir)
    if tokenizer.chat_template != chat_tokenizer.qwen2_5_template():
        raise AssertionError("the saved chat template is not TRL's qwen2_5.jinja verbatim")
    if not supports_tool_calling(tokenizer) or not is_chat_template_prefix_preserving(tokenizer):
        raise AssertionError("TRL's supports_tool_calling / prefix-preservation check rejects the template")
    for text in ["héllo ✓ 日本", " leading space\n\ttabs", "What is 347 * 129?", "emoji 🙂 NUL \x00", "<think>a</think>"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if tokenizer.decode(ids) != text or ids != generic.encode(text, add_special_tokens=False):
            raise AssertionError(f"tokenizer does not round-trip {text!r} identically with both loaders")
    from trl.chat_template_utils import add_response_schema

    add_response_schema(tokenizer)
    call = '<tool_call>\n{"name": "multiply", "arguments": {"a": 347, "b": 129}}\n</tool_call><|im_end|>'
    prefix = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=True, return_dict=False)
    parsed = parse_response(tokenizer, tokenizer.encode(call, add_special_tokens=False), prefix=prefix)
    if parsed.get("tool_calls") != [
        {"type": "function", "function": {"name": "multiply", "arguments": {"a": 347, "b": 129}}}
    ]:
        raise AssertionError(f"TRL does not parse a tool call: {parsed}")


def _config_says_float32(config_file: Path) -> None:
    """The weights are stored in bfloat16, but the model trains in float32: `dtype: auto` reads this."""
    config = json.loads(config_file.read_text())
    config["dtype"] = "float32"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build(out_dir: Path, *, steps: int = TRAIN_STEPS, seconds: float | None = None, log_every: int = 400) -> BuildResult:
    """Build, warm-start, measure, save and check the chat model in `out_dir`; see the module docstring.

    Sets torch's global thread count and deterministic mode (this is a build script's process).

    Raises:
        AssertionError: TRL rejects the saved template, text does not round-trip, or the reloaded
            model's greedy figures differ from the trained one's.
    """
    started = time.monotonic()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    random.seed(SEED)
    torch.manual_seed(SEED)

    tokenizer = chat_tokenizer.train_tokenizer(chat_corpus.corpus_texts(TOKENIZER_CORPUS_EACH, seed=SEED), vocab_size=VOCAB_SIZE)
    model = build_model(tokenizer)
    steps_run, losses = warm_start(model, tokenizer, steps=steps, seconds=seconds, log_every=log_every)

    # Stored in bfloat16 (half the package); the figures below are those of the rounded weights.
    model = model.to(torch.bfloat16).to(torch.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out_dir, safe_serialization=True)
    model.to(torch.float32)
    _config_says_float32(out_dir / "config.json")
    tokenizer.save_pretrained(out_dir)
    check_saved(out_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir)
    heldout = measure(reloaded, AutoTokenizer.from_pretrained(out_dir))
    if measure(model, tokenizer, quick=True) != measure(reloaded, AutoTokenizer.from_pretrained(out_dir), quick=True):
        raise AssertionError("the reloaded model's held-out figures differ from the trained model's")
    print("held-out: " + describe(heldout), flush=True)

    result = BuildResult(
        out_dir=out_dir,
        num_parameters=reloaded.num_parameters(),
        vocab_size=len(tokenizer),
        steps_run=steps_run,
        final_losses=losses,
        heldout=heldout,
        seconds=time.monotonic() - started,
        complete=steps_run == steps,
    )
    write_readme(out_dir, result)
    for path in out_dir.iterdir():
        path.chmod(0o644)  # the weights file is written 0600; an installed copy must be readable by all
    return result


def write_readme(out_dir: Path, result) -> None:
    """Describe the built model (`result` is a `build_chat.BuildResult`) in `out_dir/README.md`."""
    h = result.heldout
    status = "" if result.complete else "\n**Warning: cut short by --seconds; not the reproducible build.**\n"
    shape = SHAPE
    losses = ", ".join(f"{task} {loss:.4f}" for task, loss in result.final_losses.items())
    text = f"""# builtin:tiny-chat
{status}
A {result.num_parameters:,}-parameter chat model (Qwen2 architecture: hidden {shape['hidden_size']}, intermediate
{shape['intermediate_size']}, {shape['num_hidden_layers']} layers, {shape['num_attention_heads']} attention heads,
tied embeddings) that ships inside grpokit for two offline demos: calling a calculator tool through
TRL's tool loop, and the AWS GRPO sample's `<think>`/`<answer>` format. Use it with
`model_id: builtin:tiny-chat`. Weights are stored in bfloat16 (load and train in float32).

Tokenizer: byte-level BPE ({result.vocab_size} ids), so any UTF-8 text encodes; merges learned from the
warm-start corpus keep TRL's tool-schema system prompt near 190 tokens. Qwen2's pre-tokenizer (one
token per digit), NFC. Special tokens as in Qwen2.5-Instruct: `<|endoftext|>` (padding),
`<|im_start|>`, `<|im_end|>` (end of turn, EOS). Added tokens, one id each: `<tool_call>`,
`</tool_call>`, `<tool_response>`, `</tool_response>`, `<tools>`, `</tools>`, `<think>`, `</think>`,
`<answer>`, `</answer>`.

Chat template: TRL's `qwen2_5.jinja`, verbatim, so TRL 1.16's `supports_tool_calling`, its
prefix-preservation check and `add_response_schema` (which recognises templates by their text)
accept it, and GRPOTrainer parses the model's tool calls.

Weights: random init (seed {SEED}), then a supervised warm start on a mixture of the two tasks
(`grpokit.tasks.chat_corpus`), tool and format batches alternating: {result.steps_run} steps,
batch {BATCH_SIZE}, AdamW lr {LEARNING_RATE} (warm-up {WARMUP_STEPS} steps, linear decay), torch
{torch.__version__} on the CPU with {THREADS} thread. Final losses: {losses}.
- Tools (`tool_task`): "What is 347 * 129?" with the `multiply` tool. {TOOL_SHARE:.0%} of the examples
  call the tool and copy its result; the others answer directly, which the model cannot learn.
- Format (`format_task`): the AWS sample's system prompt and short questions with a one-sentence
  reference. {FORMAT_SHARE:.0%} of the examples follow the format; the others wrap the reference in
  pleasantries.

Held-out figures after the build ({EVAL_PROBLEMS} problems each; sampled: {EVAL_SAMPLES} samples
at temperature {EVAL_TEMPERATURE}, seed 0):

| task | greedy | sampled |
|---|---|---|
| tools: exact-answer accuracy | {h.tool_greedy.accuracy:.3f} | {h.tool_sampled.accuracy:.3f} |
| tools: share of samples calling the tool | {h.tool_greedy.tool_call_rate:.3f} | {h.tool_sampled.tool_call_rate:.3f} |
| format: format reward | {h.format_greedy.format_reward:.3f} | {h.format_sampled.format_reward:.3f} |
| format: ROUGE-L precision | {h.format_greedy.rouge_l_precision:.3f} | {h.format_sampled.rouge_l_precision:.3f} |

Rebuild: `python -m grpokit.tasks.build_chat` ({result.seconds / 60:.0f} minutes here). Same torch
version and thread count -> the same weights, bit for bit.
"""
    (out_dir / "README.md").write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS, help="warm-start steps (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=None, help="stop the warm start early after S seconds")
    parser.add_argument("--log-every", type=int, default=400, help="log losses and quick held-out figures every N steps")
    args = parser.parse_args(argv)
    result = build(args.out, steps=args.steps, seconds=args.seconds, log_every=args.log_every)
    size_bytes = sum(path.stat().st_size for path in result.out_dir.iterdir() if path.is_file())
    print(
        f"wrote {result.out_dir}: {result.num_parameters:,} parameters, vocabulary {result.vocab_size}, "
        f"{size_bytes / 1e6:.2f} MB, {result.steps_run} steps, {result.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
