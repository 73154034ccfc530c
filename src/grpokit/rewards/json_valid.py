"""`json_valid`: the completion (or a part of it) is valid JSON, optionally matching a JSON Schema."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, text_of
from grpokit.rewards.match import answer_block

_CODE_BLOCK = re.compile(r"```(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)


@validate_call
def json_valid_reward(
    *,
    schema: dict[str, Any] | None = None,
    extract: Literal["none", "answer_block", "code_block"] = "none",
    answer_tag: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")] = "answer",
    schema_mismatch_score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0,
) -> RewardFunc:
    """1.0 when the completion's text parses as JSON (and, with `schema`, validates against it), else 0.0.

    The text is the whole completion stripped, or its last `<answer_tag>` block (`answer_block`), or
    its last Markdown code block (`code_block`: ```` ```json ... ``` ```` or ```` ``` ... ``` ````).
    Validation uses the `jsonschema` package with the validator class the schema's `$schema` names
    (Draft 2020-12 when it names none); the schema itself is checked when the reward is built.

    Parameters:
        schema: a JSON Schema, written inline in the YAML config as a mapping.
        extract: `none` (default), `answer_block` or `code_block`.
        answer_tag: the tag `answer_block` looks for.
        schema_mismatch_score: the score of valid JSON that fails the schema (default 0.0; e.g. 0.5
            to reward well-formed JSON on the way to the right shape).

    Example:
        >>> reward = json_valid_reward(schema={"type": "object", "required": ["answer"]}, schema_mismatch_score=0.5)
        >>> reward(prompts=["Q"] * 3, completions=['{"answer": 4}', '{"result": 4}', "{answer: 4}"])
        [1.0, 0.5, 0.0]
    """
    if schema is not None:
        import jsonschema

        validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as error:
            raise RewardConfigError(
                f'reward "json_valid": the schema is not a valid JSON Schema: {error.message}',
                where=f"schema path: {'/'.join(map(str, error.path)) or '(root)'}",
                fix="fix the schema (see https://json-schema.org)",
            ) from None
    return JsonValid(schema, extract, answer_tag, schema_mismatch_score)


class JsonValid:
    """The `json_valid` reward. Picklable: the jsonschema validator (which is not) is rebuilt on unpickling."""

    __name__ = "json_valid"
    required_columns: frozenset[str] = frozenset()

    def __init__(self, schema: dict[str, Any] | None, extract: str, answer_tag: str, schema_mismatch_score: float) -> None:
        self.schema = schema
        self.validator = _validator(schema)
        self.extract = extract
        self.answer_tag = answer_tag
        self.schema_mismatch_score = schema_mismatch_score

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "validator": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, validator=_validator(state["schema"]))

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        return [self.score_text(text_of(completion)) for completion in completions]

    def json_text(self, text: str) -> str:
        if self.extract == "answer_block":
            return answer_block(text, self.answer_tag) or ""
        if self.extract == "code_block":
            blocks = _CODE_BLOCK.findall(text)
            return blocks[-1] if blocks else ""
        return text

    def score_text(self, text: str) -> float:
        try:
            value = json.loads(self.json_text(text))
        except ValueError:  # json.JSONDecodeError, and "" too
            return 0.0
        if self.validator is None or self.validator.is_valid(value):
            return 1.0
        return self.schema_mismatch_score


def _validator(schema: dict[str, Any] | None) -> Any:
    if schema is None:
        return None
    import jsonschema

    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)(schema)
