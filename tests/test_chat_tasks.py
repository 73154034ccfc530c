"""The two tasks of `builtin:tiny-chat`: problems, held-out splits, checks and datasets, worked by hand."""

from __future__ import annotations

import json
import re

import pytest

from grpokit.tasks import format_task, tool_task

# ---------------------------------------------------------------- tool task: 3-digit multiplication


def test_a_problem_is_its_question_answer_and_worked_exchange():
    problem = tool_task.MultiplicationProblem(347, 129)
    assert (problem.question, problem.answer, problem.final_answer) == (
        "What is 347 * 129?",
        "44763",
        "The answer is 44763.",
    )
    assert tool_task.MultiplicationProblem(347, 129, phrasing=2).question == "Multiply 347 by 129."
    assert problem.prompt() == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 347 * 129?"},
    ]
    assert problem.row() == {"prompt": problem.prompt(), "question": "What is 347 * 129?", "answer": "44763"}
    call, result, final = problem.tool_call_messages()
    assert call["tool_calls"] == [
        {"type": "function", "function": {"name": "multiply", "arguments": {"a": 347, "b": 129}}}
    ]
    assert result == {"role": "tool", "name": "multiply", "content": "44763"}
    assert final == {"role": "assistant", "content": "The answer is 44763."}
    assert problem.direct_messages() == [final]


def test_the_tool_has_the_schema_trl_builds_from_its_docstring_and_hints():
    from transformers.utils import get_json_schema

    assert tool_task.multiply(347, 129) == 44763
    schema = get_json_schema(tool_task.multiply)["function"]
    assert (schema["name"], schema["description"]) == ("multiply", "Multiply two integers.")
    assert schema["parameters"]["properties"] == {
        "a": {"type": "integer", "description": "The first number."},
        "b": {"type": "integer", "description": "The second number."},
    }
    assert schema["parameters"]["required"] == ["a", "b"]


@pytest.mark.parametrize(
    ("completion", "correct"),
    [
        ("The answer is 44763.", True),
        ("44763", True),
        ([{"role": "assistant", "content": "The answer is 44763."}], True),
        ("The answer is 44762.", False),
        ("The answer is 044763.", False),  # not the same digits
        ("44763 or 44764", False),  # the last number counts
        ("The answer is -44763.", False),
        ("", False),
        ("答案是 44763", True),  # unicode around the digits
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {}}]},
                {"role": "tool", "name": "multiply", "content": "44763"},
                {"role": "assistant", "content": "The answer is 44763."},
            ],
            True,
        ),
        (  # the tool result alone is not the model's answer
            [
                {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {}}]},
                {"role": "tool", "name": "multiply", "content": "44763"},
            ],
            False,
        ),
    ],
)
def test_is_correct_reads_the_last_number_of_the_final_assistant_turn(completion, correct):
    assert tool_task.is_correct(completion, "44763") is correct


def test_extract_answer_and_tool_call_count():
    assert tool_task.extract_answer("12 or 13") == "13"
    assert tool_task.extract_answer("none") == ""
    call = {"type": "function", "function": {"name": "multiply", "arguments": {"a": 1, "b": 2}}}
    completion = [
        {"role": "assistant", "content": "", "tool_calls": [call, call]},
        {"role": "tool", "name": "multiply", "content": "2"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    assert tool_task.count_tool_calls(completion) == 3
    assert tool_task.count_tool_calls("The answer is 2.") == 0
    assert tool_task.count_tool_calls([{"role": "assistant", "content": "2"}]) == 0


def test_held_out_pairs_never_appear_in_training_problems_in_either_order():
    assert tool_task.is_heldout_pair(486, 985) and tool_task.is_heldout_pair(985, 486)
    assert not tool_task.is_heldout_pair(99, 985)  # out of range: never held out
    heldout = tool_task.heldout_problems(300)
    heldout_pairs = {tuple(sorted((p.a, p.b))) for p in heldout}
    assert len({(p.a, p.b) for p in heldout}) == 300
    training = tool_task.make_problems(5000, seed=0)
    assert not heldout_pairs & {tuple(sorted((p.a, p.b))) for p in training}
    assert all(100 <= p.a <= 999 and 100 <= p.b <= 999 for p in training + heldout)
    assert tool_task.heldout_problems(50) == heldout[:50]
    assert tool_task.make_problems(20, seed=3) == tool_task.make_problems(20, seed=3)
    assert tool_task.make_problems(20, seed=3) != tool_task.make_problems(20, seed=4)
    with pytest.raises(ValueError):
        tool_task.make_problems(-1, seed=0)


def test_the_tool_dataset_is_written_in_the_aws_layout_and_reads_back(tmp_path):
    from grpokit.data.readers import load_table

    problems = tool_task.make_problems(5, seed=0)
    path = tool_task.write_dataset(tmp_path / "train", problems)
    assert path == tmp_path / "train" / "dataset.json"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows == [problem.row() for problem in problems]
    table = load_table(tmp_path / "train")
    assert table.num_rows == 5 and set(table.column_names) == {"prompt", "question", "answer"}


# ---------------------------------------------------------------- format task: the AWS sample's layout


def test_the_system_prompt_is_the_aws_samples_verbatim():
    assert format_task.SYSTEM_PROMPT == (
        "\n    Respond in the following format:\n    <think>\n    ...\n    </think>\n    <answer>\n    ...\n"
        "    </answer>\n    "
    )


def expected_answer(question: str) -> tuple[str, str]:
    """(family, reference), worked out from the question's text independently of the generators."""
    if m := re.fullmatch(r"What is (\d+) plus (\d+)\?", question):
        a, b = int(m[1]), int(m[2])
        return "addition", f"{a} plus {b} is {a + b}."
    if m := re.fullmatch(r"What number comes after (\d+)\?", question):
        return "successor", f"The number after {m[1]} is {int(m[1]) + 1}."
    if m := re.fullmatch(r"What is the first letter of the word (\w+)\?", question):
        return "first letter", f"The first letter of {m[1]} is {m[1][0]}."
    if m := re.fullmatch(r"What is the last word in: (\w+) (\w+) (\w+)\?", question):
        return "last word", f"The last word is {m[3]}."
    if m := re.fullmatch(r"Which is larger, (\d+) or (\d+)\?", question):
        a, b = int(m[1]), int(m[2])
        return "larger", f"{max(a, b)} is larger than {min(a, b)}."
    raise AssertionError(f"unknown question {question!r}")


def test_every_reference_answers_its_question():
    problems = format_task.make_problems(500, seed=0) + format_task.heldout_problems(200)
    for problem in problems:
        assert problem.answer == expected_answer(problem.question)[1]
    assert len({expected_answer(problem.question)[0] for problem in problems}) == 5  # every family appears


def test_held_out_questions_never_appear_in_training():
    heldout = format_task.heldout_problems(200)
    assert len({p.question for p in heldout}) == 200
    assert all(format_task.is_heldout_question(p.question) for p in heldout)
    training = format_task.make_problems(3000, seed=1)
    assert not {p.question for p in heldout} & {p.question for p in training}
    assert format_task.heldout_problems(20) == heldout[:20]
    assert format_task.make_problems(10, seed=5) == format_task.make_problems(10, seed=5)


def test_replies_and_their_scores_by_the_samples_rewards():
    problem = format_task.FormatProblem("What is 3 plus 4?", "3 plus 4 is 7.", "3 plus 4.")
    formatted = problem.formatted_response()
    assert formatted == "<think>\n3 plus 4.\n</think>\n<answer>\n3 plus 4 is 7.\n</answer>"
    completions = [formatted, "Sure, 3 plus 4 is 7.", "", "<answer>3 plus 4 is 7.</answer>", "3 plus 4 is 7. ✓"]
    formats, precisions = format_task.score_completions(completions, ["3 plus 4 is 7."] * 5)
    assert formats == [1.0, 0.0, 0.0, 0.0, 0.0]
    # ROUGE-L precision = LCS / completion words. Formatted: think 3 plus 4 think answer 3 plus 4 is 7
    # answer -> 12 words, LCS "3 plus 4 is 7" = 5. Chatty: sure 3 plus 4 is 7 -> 5 of 6.
    assert precisions == pytest.approx([5 / 12, 5 / 6, 0.0, 5 / 7, 1.0])


def test_a_chatty_reply_wraps_the_reference_in_pleasantries():
    import random

    problem = format_task.heldout_problems(1)[0]
    reply = problem.chatty_response(random.Random(0))
    assert problem.answer in reply and reply.startswith("Sure,") and "<think>" not in reply


def test_the_format_dataset_is_the_samples_layout_and_reads_back(tmp_path):
    from grpokit.data.readers import load_table

    problems = format_task.heldout_problems(4)
    path = format_task.write_dataset(tmp_path / "test", problems)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == {
        "question": problems[0].question,
        "prompt": [
            {"role": "system", "content": format_task.SYSTEM_PROMPT},
            {"role": "user", "content": problems[0].question},
        ],
        "answer": problems[0].answer,
    }
    assert load_table(tmp_path / "test").num_rows == 4
