"""Files the agent tests share: tools, environments and rewards written next to a config, as a user would."""

from __future__ import annotations

import json
from pathlib import Path

TOOLS_PY = '''
import asyncio

def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a * b


def broken(a: int) -> int:
    """Always fails.

    Args:
        a: Any number.
    """
    raise RuntimeError("the service is down")


async def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    await asyncio.sleep(0)
    return a + b


def no_docstring(a: int) -> int:
    return a


def no_hint(a) -> int:
    """Echo.

    Args:
        a: Anything.
    """
    return a


RESETS = []


class Counter:
    def __init__(self, start: int = 0):
        self.start = start

    def reset(self, **row):
        RESETS.append(("Counter", dict(row)))
        self.count = self.start
        return " Count up."

    def increment(self, step: int) -> int:
        """Add to the counter.

        Args:
            step: How much to add.
        """
        self.count += step
        return self.count

    def get_reward(self) -> float:
        return float(self.count)


class Echo:
    def reset(self, **row):
        RESETS.append(("Echo", dict(row)))

    def echo(self, text: str) -> str:
        """Repeat a text.

        Args:
            text: The text.
        """
        return text

    def get_reward(self) -> float:
        return 0.5


class Strict:
    def reset(self, level: int):
        self.level = level

    def get_reward(self) -> float:
        return float(self.level)


class NeedsTarget:
    def reset(self, target: str, **row):
        self.target = target

    def get_reward(self) -> float:
        return 0.0


class NoReset:
    def step(self, x: int) -> int:
        """Step.

        Args:
            x: A number.
        """
        return x
'''

REWARDS_PY = '''
import asyncio

CALLS = []

def has_answer(prompts, completions, answer, **kwargs):
    return [1.0 if a in str(c) else 0.0 for c, a in zip(completions, answer)]


async def async_length(prompts, completions, **kwargs):
    await asyncio.sleep(0)
    CALLS.append(len(completions))
    return [len(str(c)) / 1000 for c in completions]


async def async_flaky(prompts, completions, **kwargs):
    raise ValueError("judge unreachable")
'''


def agent_files(directory: Path, *, environments: list[str] | None = None) -> Path:
    """tools.py, rw.py and data.jsonl (4 multiplication prompts; an `environment` column when given) in `directory`."""
    (directory / "tools.py").write_text(TOOLS_PY, encoding="utf-8")
    (directory / "rw.py").write_text(REWARDS_PY, encoding="utf-8")
    pairs = [(347, 129), (512, 233), (101, 999), (640, 128)]
    rows = []
    for index, (a, b) in enumerate(pairs):
        row = {"prompt": [{"role": "user", "content": f"What is {a} * {b}?"}], "answer": str(a * b), "level": index}
        if environments:
            row["environment"] = environments[index % len(environments)]
        rows.append(row)
    data = directory / "data.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return data


def agent_config(directory: Path, **keys) -> dict:
    """A config for builtin:tiny-chat, as small as a step can be, with the agent `keys`."""
    return {
        "model_id": "builtin:tiny-chat",
        "train_dataset_path": str(directory / "data.jsonl"),
        "output_dir": str(directory / "out"),
        "max_steps": 1,
        "num_generations": 2,
        "per_device_train_batch_size": 4,
        "max_completion_length": 12,
        "max_tool_calling_iterations": 1,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "rewards": ["rw.py:has_answer"],
        **keys,
    }


FAILING_MULTIPLY_PY = '''
def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    raise ConnectionError("calculator offline")
'''


def tool_task_files(directory: Path, *, rows: int = 8) -> Path:
    """problems.jsonl (the tool task's system prompt and questions, on which builtin:tiny-chat calls `multiply`
    in about 30% of its samples) and failing.py (a `multiply` of the same name and schema that always raises)."""
    from grpokit.tasks.tool_task import make_problems

    (directory / "failing.py").write_text(FAILING_MULTIPLY_PY, encoding="utf-8")
    data = directory / "problems.jsonl"
    data.write_text("".join(json.dumps(problem.row()) + "\n" for problem in make_problems(rows, seed=0)), encoding="utf-8")
    return data
