"""Tables and conversations the commands print (rich), kept out of the command definitions."""

from __future__ import annotations

from rich.table import Table

from grpokit.cli.common import stdout
from grpokit.formatting import fmt


def reward_table(report) -> Table:
    """`grpokit validate`'s rewards on sample rows: one column per reward (with its weight), and the total."""
    table = Table(title="rewards on sample rows (dummy completions)")
    table.add_column("row")
    table.add_column("completion")
    for name, weight in zip(report.reward_names, report.reward_weights):
        table.add_column(f"{name} (x{weight:g})", justify="right")
    table.add_column("total", justify="right")
    for entry in report.reward_rows:
        scores = entry["scores"]
        table.add_row(
            str(entry["row"]),
            repr(entry["completion"])[:40],
            *[fmt(scores.get(name)) for name in report.reward_names],
            fmt(entry["total"]),
        )
    return table


def print_sample_conversation(samples: list[dict]) -> None:
    """With tools: the first completion that made a tool call, turn by turn (every sample is in eval_samples.jsonl)."""
    from rich.text import Text

    from grpokit.outputs.conversation import conversation_text, has_tool_messages

    sample = next((sample for sample in samples if has_tool_messages(sample.get("completion"))), None)
    if sample is not None:
        stdout.print(f"a sample conversation ({sample.get('model')}, row {sample.get('row')}, reward total {fmt(sample.get('total'))}):")
        stdout.print(Text(conversation_text(sample["completion"])))
