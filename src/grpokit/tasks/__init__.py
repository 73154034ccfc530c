"""The built-in models' tasks and the scripts that rebuild them.

Each task makes its problems, splits them once into training and held-out sets, scores answers and
measures a model on the held-out set: `addition` (`builtin:tiny`), `tool_task` (a calculator tool,
through `tool_loop`, TRL's tool loop outside training) and `format_task` (the AWS sample's
`<think>`/`<answer>` layout), both on `builtin:tiny-chat`. `build_tiny` and `build_chat` rebuild the
models (`chat_tokenizer`, `chat_corpus`: the chat model's tokenizer and warm-start corpus). The
models' files and their registry stay in `grpokit.model.builtin`; this room sits above `model` and
`rewards`, since the tasks score with grpokit's own rewards.
"""
