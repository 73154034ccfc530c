"""Rebuild `builtin:tiny`: a 0.9 M parameter Qwen2 with a byte-level tokenizer, warm-started on addition.

    python -m grpokit.tasks.build_tiny [--out DIR] [--steps N] [--seconds S]

Steps: build the tokenizer (256 byte symbols, no merges, 4 special tokens) -> random-init the model
from a fixed seed -> supervised warm start on the addition task's training pairs ("a+b=" -> answer
+ <|endoftext|>, loss on the answer tokens only) for a fixed number of steps -> check held-out greedy
accuracy -> save model, tokenizer and a README to `DIR` (default: the `tiny/` folder next to this file).

The build stops on a step count, not on wall time, so two builds with the same torch version and
thread count write the same weights. `--seconds` is only a safety cap for quick experiments: a
build cut short by it says so and is not the reproducible model.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from grpokit.tasks import addition

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "model" / "builtin" / "tiny"
SEED = 1234
TRAIN_STEPS = 960  # mid-way up the steep rise of held-out accuracy (0.1 at step 800, 0.75 at 1000)
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
THREADS = 2  # CPU float sums depend on the thread count; fixing it keeps rebuilds bit-identical
EVAL_PROBLEMS = 200

ENDOFTEXT, IM_START, IM_END, PAD = "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, PAD]  # ids 256, 257, 258, 259
MAX_POSITIONS = 2048

# ChatML, as Qwen uses. Content may be a string or a list of {"type": "text", "text": ...} parts.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class BuildResult:
    out_dir: Path
    num_parameters: int
    steps_run: int
    final_loss: float
    heldout_accuracy: float
    seconds: float
    complete: bool  # False when --seconds stopped the warm start before its step count


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable unicode character (the byte-level BPE alphabet)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shifted)
            shifted += 1
    return mapping


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer: token id == byte value for ids 0..255, then the special tokens.

    Text is NFC-normalized first, as Qwen's tokenizers do: transformers' AutoTokenizer always loads
    a qwen2 model's tokenizer as `Qwen2Tokenizer`, which adds NFC whatever tokenizer.json says, so
    building it in here keeps the two loaders identical. NFC text round-trips exactly.
    """
    vocab = {symbol: byte for byte, symbol in bytes_to_unicode().items()}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=ENDOFTEXT,
        pad_token=PAD,
        extra_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        padding_side="left",
    )


def build_model(tokenizer: PreTrainedTokenizerFast) -> Qwen2ForCausalLM:
    """Random-init the Qwen2 model (call after seeding). Generation stops at <|endoftext|> or <|im_end|>."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)],
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def make_batch(
    problems: list[addition.AdditionProblem], tokenizer: PreTrainedTokenizerFast
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded "a+b=answer<eos>" ids, attention mask and labels (-100 except answer and eos)."""
    rows: list[tuple[list[int], list[int]]] = []
    for problem in problems:
        prompt_ids = tokenizer.encode(problem.prompt, add_special_tokens=False)
        answer_ids = tokenizer.encode(problem.answer, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append((prompt_ids, answer_ids))
    width = max(len(prompt) + len(answer) for prompt, answer in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id)  # [B, T]
    labels = torch.full((len(rows), width), -100)  # [B, T]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [B, T]
    for row, (prompt, answer) in enumerate(rows):
        length = len(prompt) + len(answer)
        input_ids[row, :length] = torch.tensor(prompt + answer)
        labels[row, len(prompt) : length] = torch.tensor(answer)
        attention_mask[row, :length] = 1
    return input_ids, attention_mask, labels


def warm_start(
    model: Qwen2ForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    *,
    steps: int,
    seconds: float | None,
    log_every: int,
) -> tuple[int, float]:
    """Supervised training on random training pairs. Returns (steps run, loss of the last step)."""
    train_pairs = addition.split_pairs().train
    rng = random.Random(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    heldout = addition.heldout_problems(EVAL_PROBLEMS)
    model.train()
    started = time.monotonic()
    loss_value = float("nan")
    for step in range(1, steps + 1):
        batch = [addition.AdditionProblem(*rng.choice(train_pairs)) for _ in range(BATCH_SIZE)]
        input_ids, attention_mask, labels = make_batch(batch, tokenizer)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        elapsed = time.monotonic() - started
        if log_every and step % log_every == 0:
            accuracy = addition.greedy_accuracy(model, tokenizer, heldout).accuracy
            print(
                f"step {step:5d}  loss {loss_value:.4f}  held-out acc {accuracy:.3f}  {elapsed:6.1f}s",
                flush=True,
            )
        if seconds is not None and elapsed > seconds and step < steps:
            print(f"stopped by --seconds {seconds} at step {step}/{steps}: NOT the reproducible build")
            return step, loss_value
    return steps, loss_value


def check_tokenizer(out_dir: Path) -> None:
    """Reload the saved tokenizer and fail loudly if text does not round-trip or chat fails."""
    tokenizer = AutoTokenizer.from_pretrained(out_dir)  # a Qwen2Tokenizer, see build_tokenizer
    generic = PreTrainedTokenizerFast.from_pretrained(out_dir)
    for text in ["héllo ✓ 日本", " leading space\n\ttabs", "12+34=", "emoji 🙂 and NUL \x00"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if tokenizer.decode(ids) != text or ids != list(text.encode("utf-8")):
            raise AssertionError(f"tokenizer does not round-trip {text!r}: got {tokenizer.decode(ids)!r}")
    for text in ["e\u0301", "Å", "12+34=<|im_end|>"]:
        if tokenizer.encode(text) != generic.encode(text):
            raise AssertionError(f"AutoTokenizer and PreTrainedTokenizerFast disagree on {text!r}")
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "12+34="}], tokenize=False, add_generation_prompt=True
    )
    if chat != "<|im_start|>user\n12+34=<|im_end|>\n<|im_start|>assistant\n":
        raise AssertionError(f"unexpected chat template output {chat!r}")


def write_readme(out_dir: Path, result: BuildResult) -> None:
    status = "" if result.complete else "\n**Warning: cut short by --seconds; not the reproducible build.**\n"
    text = f"""# builtin:tiny
{status}
A {result.num_parameters:,}-parameter causal LM (Qwen2 architecture: hidden 128, intermediate 384,
4 layers, 4 attention heads, tied embeddings) that ships inside grpokit so demos and tests run offline.
Use it with `model_id: builtin:tiny`.

Tokenizer: byte-level, so any UTF-8 text encodes (NFC-normalized first, as Qwen's tokenizers do).
Ids 0..255 are the bytes (GPT-2 byte-to-unicode symbols, no merges); 256 `<|endoftext|>` (eos),
257 `<|im_start|>`, 258 `<|im_end|>`, 259 `<|pad|>`.
ChatML chat template. Generation stops at `<|endoftext|>` or `<|im_end|>`.

Weights: random init (seed {SEED}), then a supervised warm start on 2-digit addition ("12+34=" -> "46"
+ `<|endoftext|>`, loss on the answer only) over the training pairs of
`grpokit.tasks.addition.split_pairs()`: {result.steps_run} steps, batch {BATCH_SIZE}, AdamW lr
{LEARNING_RATE}, torch {torch.__version__} on the CPU with {THREADS} threads.
Final loss {result.final_loss:.4f}.

Held-out greedy exact-match accuracy (`heldout_problems({EVAL_PROBLEMS})`, pairs never trained on):
**{result.heldout_accuracy:.3f}**. It is left well below 1 on purpose: GRPO has room to raise it.
Plain prompts ("a+b=") only; chat-format prompts were never trained and give garbage.

Rebuild: `python -m grpokit.tasks.build_tiny` (under a minute on 2 idle CPU cores). Same torch
version and thread count -> the same weights, bit for bit. Elsewhere the accuracy may move: the step
count sits on the steep part of the learning curve (0.14 at step 800, 0.75 at step 1000).
"""
    (out_dir / "README.md").write_text(text, encoding="utf-8")


def build(
    out_dir: Path, *, steps: int = TRAIN_STEPS, seconds: float | None = None, log_every: int = 100
) -> BuildResult:
    """Build, train, check and save the tiny model to `out_dir`; see the module docstring.

    Sets torch's global thread count and deterministic mode (this is a build script's process).

    Raises:
        AssertionError: the saved tokenizer does not round-trip text, or the reloaded model scores
            differently from the trained one.
    """
    started = time.monotonic()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    random.seed(SEED)
    torch.manual_seed(SEED)

    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    steps_run, final_loss = warm_start(model, tokenizer, steps=steps, seconds=seconds, log_every=log_every)
    accuracy = addition.greedy_accuracy(model, tokenizer, addition.heldout_problems(EVAL_PROBLEMS)).accuracy

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    check_tokenizer(out_dir)
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir)
    reloaded_accuracy = addition.greedy_accuracy(
        reloaded, tokenizer, addition.heldout_problems(EVAL_PROBLEMS)
    )
    if reloaded_accuracy.accuracy != accuracy:
        raise AssertionError(f"reloaded model scores {reloaded_accuracy.accuracy}, trained one {accuracy}")

    result = BuildResult(
        out_dir=out_dir,
        num_parameters=model.num_parameters(),
        steps_run=steps_run,
        final_loss=final_loss,
        heldout_accuracy=accuracy,
        seconds=time.monotonic() - started,
        complete=steps_run == steps,
    )
    write_readme(out_dir, result)
    for path in out_dir.iterdir():
        path.chmod(0o644)  # the weights file is written 0600; an installed copy must be readable by all
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--steps", type=int, default=TRAIN_STEPS, help="warm-start steps (default %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="stop the warm start early after S seconds"
    )
    parser.add_argument(
        "--log-every", type=int, default=100, help="log loss and held-out accuracy every N steps"
    )
    args = parser.parse_args(argv)
    result = build(args.out, steps=args.steps, seconds=args.seconds, log_every=args.log_every)
    size_bytes = sum(path.stat().st_size for path in result.out_dir.iterdir() if path.is_file())
    print(
        f"wrote {result.out_dir}: {result.num_parameters:,} parameters, {size_bytes / 1e6:.2f} MB, "
        f"{result.steps_run} steps, held-out greedy accuracy {result.heldout_accuracy:.3f}, "
        f"{result.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
