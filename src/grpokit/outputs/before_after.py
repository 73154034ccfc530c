"""Before and after: the same few training prompts answered by the model before training and after it.

TRL's own completions (`sample_completions.jsonl`) are of whatever prompts each step drew, so the
first and the last step rarely share one. This callback asks the model itself, greedily, for the first
`PROMPTS` distinct prompts of the training set when training starts (step 0; not again on a resume)
and when it ends, scores the answers with the run's rewards, and appends them to
`before_after_completions.jsonl` as `{"step", "prompt", "answer", "completion", "reward"}` (a chat
completion also as `messages`, its message list): the report shows them side by side.

It generates on the main process only, with the model as it is (no copy), in eval mode, on a forked
random stream (training draws the same numbers as without it). Under FSDP or DeepSpeed, whose
parameters are sharded across processes, it records nothing. A failure here is a warning, never the
end of the run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpokit.outputs.conversation import MESSAGES_KEY, is_conversation
from grpokit.outputs.metrics import truncate_jsonl_after
from grpokit.outputs.tracking.callback import message_text

logger = logging.getLogger("grpokit.outputs")

PROMPTS = 4  # prompts answered before and after


def first_distinct_rows(dataset, count: int = PROMPTS, scan: int = 256) -> list[dict[str, Any]]:
    """The first `count` rows of `dataset` with distinct prompts (looking at `scan` rows at most)."""
    rows, seen = [], set()
    for index in range(min(len(dataset), scan)):
        row = dataset[index]
        key = json.dumps(row.get("prompt"), ensure_ascii=False, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            rows.append(row)
        if len(rows) == count:
            break
    return rows


class BeforeAfterCompletionsCallback(TrainerCallback):
    """Greedy completions of the same prompts at the start and at the end of training (see the module docstring)."""

    def __init__(
        self,
        path: str | Path,
        rows: list[dict[str, Any]],
        reward_set,
        tokenizer,
        *,
        max_new_tokens: int,
        chat_template_kwargs=None,
        tools: list | None = None,
        max_tool_calling_iterations: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.rows = rows
        self.reward_set = reward_set
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.tools = list(tools or [])  # with tools, the answers run TRL's tool loop (`grpokit.model.tool_loop`)
        self.max_tool_calling_iterations = max_tool_calling_iterations

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.is_world_process_zero:
            truncate_jsonl_after(self.path, state.global_step)
        if state.global_step == 0:  # a resumed run keeps the "before" of its start
            self._record(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._record(args, state, model)

    def _record(self, args, state, model) -> None:
        if not state.is_world_process_zero or model is None or not self.rows or args.fsdp or args.deepspeed:
            return
        try:
            records = self._completions(model, state.global_step)
        except Exception as error:  # noqa: BLE001 -- a record of the run, not the run: say so and go on
            logger.warning("before/after completions not recorded at step %d: %s: %s", state.global_step, type(error).__name__, error)
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)

    def _completions(self, model, step: int) -> list[dict[str, Any]]:
        from grpokit.model.generation import GenerationSettings, generate_completions
        from grpokit.rewards.reward_set import run_rewards_on_rows

        settings = GenerationSettings(
            max_new_tokens=self.max_new_tokens, batch_size=len(self.rows), chat_template_kwargs=self.chat_template_kwargs
        )
        prompts = [row["prompt"] for row in self.rows]
        if self.tools:
            flat, completion_ids = self._tool_loop_completions(model, prompts), None
        else:
            was_training = model.training
            model.eval()
            try:
                completions, ids = generate_completions(model, self.tokenizer, prompts, settings)
            finally:
                model.train(was_training)
            flat, completion_ids = [per_row[0] for per_row in completions], [per_row[0] for per_row in ids]
        counts = [func.failures for func in self.reward_set.funcs]
        try:
            scored = run_rewards_on_rows(self.reward_set, self.rows, flat, completion_ids=completion_ids)
        finally:  # a record of the run, not part of it: its failures are not the run's `on_error: zero` count
            for func, count in zip(self.reward_set.funcs, counts):
                func.failures = count
        records = []
        for row, completion, result in zip(self.rows, flat, scored):
            record = {"step": step, "prompt": message_text(row["prompt"]), "answer": row.get("answer")}
            record.update({"completion": message_text(completion), "reward": result["total"]})
            if is_conversation(completion):
                record[MESSAGES_KEY] = completion
            records.append(record)
        return records


    def _tool_loop_completions(self, model, prompts: list) -> list[list[dict[str, Any]]]:
        """Greedy answers through TRL's tool loop with the run's tools: each a message list (calls and results in it)."""
        from grpokit.model.tool_loop import generate_with_tools

        rollouts = generate_with_tools(
            model,
            self.tokenizer,
            prompts,
            self.tools,
            max_new_tokens=self.max_new_tokens,
            max_tool_calling_iterations=self.max_tool_calling_iterations or 1,
            batch_size=len(prompts),
        )
        return [per_prompt[0] for per_prompt in rollouts.completions]


def before_after_callback(trainer, reward_set, tokenizer, path: str | Path):
    """The callback for a built GRPOTrainer: its training set's first prompts, its completion length, its tools.

    A run with environments (their tools live in per-row instances) or a custom `rollout_func` records
    nothing: answers generated without them would not be the ones training sees.
    """
    args = trainer.args
    rows = first_distinct_rows(trainer.train_dataset) if hasattr(trainer.train_dataset, "__getitem__") else []
    if getattr(trainer, "environment_factories", None) or getattr(trainer, "rollout_func", None):
        logger.info("before/after completions are not recorded for a run with environments or a rollout_func")
        rows = []
    return BeforeAfterCompletionsCallback(
        path,
        rows,
        reward_set,
        tokenizer,
        max_new_tokens=args.max_completion_length,
        chat_template_kwargs=getattr(args, "chat_template_kwargs", None),
        tools=list(getattr(trainer, "tools", None) or []),
        # TRL's own count (no limit when the config leaves it unset): the loop ends when no call is left or the budget is spent
        max_tool_calling_iterations=getattr(trainer, "max_tool_calling_iterations", None) or getattr(args, "max_tool_calling_iterations", None),
    )
