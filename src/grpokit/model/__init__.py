"""The model stage: the policy model and its tokenizer, LoRA / QLoRA, generation, and the built-in models.

| module | owns |
|---|---|
| `loading` | model + tokenizer from a Hugging Face id or a local dir, dtype, attention, LoRA / QLoRA |
| `generation` | batched greedy or sampled generation shaped as GRPOTrainer shapes completions |
| `builtin/` | the tiny models that ship inside the package, their task (2-digit addition) and build script |
"""
