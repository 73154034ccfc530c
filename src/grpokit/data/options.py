"""The `dataset:` section of the config: how rows become prompts, and the column names the pipeline relies on."""

from __future__ import annotations

import re
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROMPT_COLUMN = "prompt"  # the column TRL's GRPOTrainer reads prompts from
ROW_COLUMN = "grpokit_row"  # index of the row in the source; reward wrappers use it to name rows

DatasetFormat = Literal["auto", "json", "jsonl", "csv", "parquet", "arrow"]


class DatasetOptions(BaseModel):
    """The `dataset:` section of the config: how rows become prompts."""

    model_config = ConfigDict(extra="forbid")

    prompt_column: str = Field(
        default=PROMPT_COLUMN,
        min_length=1,
        description="Column holding the prompt: text, or a chat conversation (a list of "
        "{role, content} messages). Renamed to `prompt`, the column TRL reads.",
    )
    prompt_template: str | None = Field(
        default=None,
        description="Build the prompt from other columns with Python str.format placeholders, "
        "e.g. 'Question: {question}\\nAnswer:'. The result goes to the column `prompt` "
        "(replacing any column of that name); prompt_column is then not used.",
    )
    system_prompt: str | None = Field(
        default=None,
        description="System message added to every prompt. A text prompt becomes a chat "
        "[system, user]; a chat prompt gets it prepended unless it already has a system message, "
        "which is kept.",
    )
    continue_final_message: bool = Field(
        default=False,
        description="Chat prompts that end with an assistant message: false (default) takes that message as the "
        "reference answer when every conversation ends with one (the turns before it are the prompt), and is an "
        "error otherwise; true keeps it as a prefill the model continues (TRL's continue_final_message).",
    )
    format: DatasetFormat = Field(
        default="auto",
        description="File format of the dataset paths. 'auto' picks it from the extension, or "
        "the layout of a directory. 'json' and 'jsonl' both accept a JSON array or JSON Lines; "
        "'arrow' is an .arrow file or a datasets save_to_disk directory.",
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Keep only the first N rows of each dataset (after shuffle_seed), for quick runs.",
    )
    shuffle_seed: int | None = Field(
        default=None,
        description="Shuffle the rows with this seed before max_samples, to keep a random subset "
        "instead of the first rows. The trainer shuffles every epoch anyway.",
    )

    @field_validator("prompt_template")
    @classmethod
    def _template_names_columns(cls, template: str | None) -> str | None:
        if template is not None and not template_columns(template):
            raise ValueError("prompt_template has no {column} placeholder, e.g. 'Question: {question}'")
        return template

    @model_validator(mode="after")
    def _template_or_column(self) -> DatasetOptions:
        if self.prompt_template is not None and self.prompt_column != PROMPT_COLUMN:
            raise ValueError(
                "set either prompt_template (it writes the column `prompt`) or prompt_column, not both"
            )
        return self


def template_columns(template: str) -> list[str]:
    """The column names a `str.format` template reads, in order, without repeats.

    `"Q: {question} ({meta[source]})"` -> `["question", "meta"]`. Raises `ValueError` for a
    malformed template or a positional placeholder (`{}`, `{0}`).
    """
    columns: list[str] = []
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        column = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if not column or column.isdigit():
            raise ValueError(f"placeholder {{{field_name}}} must name a column, e.g. {{question}}")
        if column not in columns:
            columns.append(column)
    return columns

