"""Reading a config: the YAML file, TRL's field names without importing TRL, and the start-up path.

A bad file or key must be reported before torch or TRL load (they take seconds); these tests read
the installed TRL to keep the fast path honest, and check which modules the CLI has loaded when it
reports one.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from grpokit.config.trl_names import dataclass_field_names
from grpokit.config.value_rules import culprit_keys, documented_choices
from grpokit.config.yaml_file import read_yaml_file
from grpokit.errors import ConfigError

HEAVY_MODULES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "nltk", "rouge_score", "pandas", "pyarrow")


def read(tmp_path: Path, content: str | bytes) -> dict:
    path = tmp_path / "c.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return read_yaml_file(path)


def error_of(tmp_path: Path, content: str | bytes) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, content)
    return caught.value


# ----------------------------------------------------------------------------- the YAML file


def test_a_plain_mapping_reads_as_is(tmp_path):
    assert read(tmp_path, "a: 1\nb: [x, y]\nc: {d: 2}\n") == {"a": 1, "b": ["x", "y"], "c": {"d": 2}}
    assert read(tmp_path, "") == {} and read(tmp_path, "# only a comment\n") == {}


def test_a_byte_order_mark_is_allowed(tmp_path):
    assert read(tmp_path, "\ufeffmodel_id: builtin:tiny\n".encode()) == {"model_id": "builtin:tiny"}


@pytest.mark.parametrize(
    ("content", "line", "column"),
    [(b"a: 1\nb: caf\xe9\n", 2, 7), (b"\xff\xfea\x00", 1, 1), (b"a: 1\n\nc: \x80\n", 3, 4)],
)
def test_bytes_that_are_not_utf8_name_the_line_and_column(tmp_path, content, line, column):
    error = error_of(tmp_path, content)
    assert f"line {line}, column {column}" in error.what and error.where.endswith(f"c.yaml, line {line}")


@pytest.mark.parametrize(
    ("content", "key", "lines"),
    [
        ("a: 1\nb: 2\na: 3\n", "a", "lines 1 and 3"),
        ("s:\n  x: 1\n  y: 2\n  x: 3\n", "x", "lines 2 and 4"),
        ("rewards:\n  - name: length\n    weight: 1\n    weight: 2\n", "weight", "lines 3 and 4"),
        ("1: a\n1: b\n", 1, "lines 1 and 2"),
    ],
)
def test_a_key_written_twice_is_an_error_with_both_lines(tmp_path, content, key, lines):
    error = error_of(tmp_path, content)
    assert f"key {key!r} is written twice ({lines})" in error.what
    assert error.where.endswith(f"line {lines.rsplit(' ', 1)[1]}")


def test_merge_keys_may_override_what_they_merge(tmp_path):
    content = "base: &base {lr: 1, seed: 2}\nrun:\n  <<: *base\n  lr: 3\n"
    assert read(tmp_path, content)["run"] == {"lr": 3, "seed": 2}


def test_a_syntax_error_names_the_line_column_and_shows_it(tmp_path):
    error = error_of(tmp_path, "a: 1\nb: [1, 2\nc: 3\n")
    assert error.what.startswith("config file is not valid YAML:")
    assert error.where.endswith("c.yaml, line 3, column 2: c: 3"), error.where  # the file, the place, the line's text
    assert "\n" not in error.what, "one line"


def test_missing_directory_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        read_yaml_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        read_yaml_file(tmp_path)
    assert "got a list" in error_of(tmp_path, "- 1\n- 2\n").what
    assert "got a str" in error_of(tmp_path, "just text\n").what


def test_python_tags_are_refused(tmp_path):
    assert "python/object" in error_of(tmp_path, "a: !!python/object/apply:os.system [echo hi]\n").what


# ----------------------------------------------------------------------------- TRL's names, without TRL


@pytest.mark.parametrize("class_name", ["GRPOConfig", "ModelConfig", "ScriptArguments"])
def test_field_names_read_from_trls_source_match_the_imported_classes(class_name):
    import trl

    imported = {field.name for field in dataclasses.fields(getattr(trl, class_name)) if field.init}
    assert dataclass_field_names("trl", class_name) == imported


def test_names_it_cannot_follow_are_none_not_a_guess():
    assert dataclass_field_names("trl", "NoSuchConfig") is None
    assert dataclass_field_names("no_such_package_here", "GRPOConfig") is None


# ----------------------------------------------------------------------------- value rules read from TRL


def test_documented_choices_come_from_trls_field_help():
    import trl

    help_text = next(f for f in dataclasses.fields(trl.GRPOConfig) if f.name == "loss_type").metadata["help"]
    choices = documented_choices("loss_type")
    assert choices and "dapo" in choices and all(f"'{choice}'" in help_text for choice in choices)
    assert documented_choices("learning_rate") is None  # its help lists no values
    assert documented_choices("no_such_field") is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Invalid learning rate: -1.0", ["learning_rate"]),
        ("Unknown loss type: gspo", ["loss_type"]),
        ("got an unexpected keyword argument 'num_cycle'", ["lr_scheduler_kwargs"]),
        ("something else entirely", []),
    ],
)
def test_the_culprit_of_a_library_message_is_the_key_it_names_or_quotes(message, expected):
    settings = {"learning_rate": -1, "loss_type": "gspo", "lr_scheduler_kwargs": {"num_cycle": 2}, "seed": 0}
    assert culprit_keys(message, settings)[: len(expected)] == expected


# ----------------------------------------------------------------------------- the start-up path


PROBE = """
import json, sys
from grpokit.cli import main
sys.argv = ["grpokit", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    code = exit.code
heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.__stdout__)
"""


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("model_id: [unclosed\n", "not valid YAML"),
        ("model_id: builtin:tiny\ntrain_dataset_path: x.jsonl\nlearnin_rate: 1\n", "unknown config key 'learnin_rate'"),
        ("model_id: builtin:tiny\ntrain_dataset_path: x.jsonl\ndataset: {promt_column: q}\n", "dataset.promt_column"),
        ("model_id: builtin:tiny\nseed: 1\nseed: 2\n", "written twice"),
        (None, "config file not found"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_bad_file_or_key_is_reported_before_torch_or_trl_is_imported(tmp_path, content, message, command):
    config = tmp_path / "c.yaml"
    if content is not None:
        config.write_text(content)
    probe = PROBE.format(HEAVY=HEAVY_MODULES)
    result = subprocess.run([sys.executable, "-c", probe, command, str(config)], capture_output=True, text=True, timeout=120, check=False)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 2 and message in result.stderr, result.stderr
    assert outcome["heavy"] == [], f"imported before reporting the error: {outcome['heavy']} (see benchmarks/startup_errors.py)"
