"""The tokenizer of `builtin:tiny-chat`: byte-level BPE trained on its corpus, Qwen2.5's chat template.

- Byte-level BPE, so any UTF-8 text encodes: the 256 byte symbols, merges learned from the warm-start
  corpus (`chat_corpus.corpus_texts`), NFC normalisation and Qwen2's pre-tokenizer (each digit on its
  own). That is what transformers' `Qwen2Tokenizer` rebuilds from `tokenizer.json` whatever the file
  says, so `AutoTokenizer` and `PreTrainedTokenizerFast` give the same ids. Merges keep the long
  tool-schema system prompt TRL renders at about a quarter of its bytes, which is most of the CPU time.
- Special tokens as Qwen2.5-Instruct has them: `<|endoftext|>` (padding), `<|im_start|>`, `<|im_end|>`
  (end of turn and EOS, so TRL's tool loop cuts tool-result ids at the right place). Tags the tasks
  write are added tokens, one id each: `<tool_call>`, `</tool_call>`, `<tool_response>`,
  `</tool_response>`, `<tools>`, `</tools>`, `<think>`, `</think>`, `<answer>`, `</answer>`.
- Chat template: TRL's `qwen2_5.jinja`, verbatim. TRL recognises templates by their text
  (`add_response_schema`), so an exact copy is what lets GRPOTrainer parse tool calls.
"""

from __future__ import annotations

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)  # ids 0, 1, 2
TAG_TOKENS = (
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<tools>", "</tools>",
    "<think>", "</think>", "<answer>", "</answer>",
)  # fmt: skip
# transformers' Qwen2Tokenizer pre-tokenizer (models/qwen2/tokenization_qwen2.py, transformers 5.23).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
MAX_POSITIONS = 1024


def qwen2_5_template() -> str:
    """TRL's Qwen2.5 chat template, as TRL compares it."""
    from trl.chat_template_utils import qwen2_5_chat_template

    return qwen2_5_chat_template


def train_tokenizer(texts: list[str], *, vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with `vocab_size` ids in all (specials and tags included), trained on `texts`.

    Special and tag tokens are removed from the texts before training, so no merge is spent on them.
    BPE training in `tokenizers` is deterministic: the same texts give the same merges.
    """
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_strip_tokens(text) for text in texts], trainer=trainer)
    backend.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START],
        chat_template=qwen2_5_template(),
        model_max_length=MAX_POSITIONS,
        padding_side="left",
    )


def _strip_tokens(text: str) -> str:
    for token in (*SPECIAL_TOKENS, *TAG_TOKENS):
        text = text.replace(token, "\n")
    return text
