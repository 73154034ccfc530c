"""Reading a YAML config file: one clear error naming the file, the line and the key, never a traceback.

`read_yaml_file` checks, in order: the path exists and is a file it may read; the bytes are UTF-8 (a
byte-order mark is allowed); the text is YAML; no mapping writes the same key twice (YAML itself
would silently keep the last value); the top level is a mapping. It imports nothing heavy, so a bad
file is reported before torch or TRL are loaded.

Example:
    >>> read_yaml_file("run.yaml")
    {'model_id': 'builtin:tiny', 'learning_rate': 1e-05}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from grpokit.errors import ConfigError

MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *defaults`: keys merged in may be overridden on purpose


class DuplicateKeyError(yaml.YAMLError):
    """A mapping in the file writes one key twice."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        super().__init__(f"key {key!r} written twice")
        self.key = key
        self.first_line = first.line + 1
        self.second_line = second.line + 1


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping with a repeated key (merge keys excepted)."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader reports it itself
                    continue
                if first is not None:
                    raise DuplicateKeyError(key, first, key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path` (`{}` for an empty file).

    Raises:
        ConfigError: the file is missing, a directory or unreadable; is not UTF-8 (line and column of
            the first bad byte); is not YAML (line and column); writes a key twice (both lines);
            or is not a mapping.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}", fix="pass the path of an existing YAML file")
    if path.is_dir():
        raise ConfigError(f"config path is a directory, not a YAML file: {path}", fix="pass the YAML file inside it")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"cannot read config file {path}: {error.strerror or error}", fix="check the file's permissions"
        ) from None
    return parse_yaml_mapping(decode_config_bytes(raw, str(path)), str(path))


def decode_config_bytes(raw: bytes, source: str) -> str:
    """`raw` as UTF-8 text (a leading byte-order mark dropped).

    Raises:
        ConfigError: a byte that is not UTF-8, naming its line and column.
    """
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = error.start
        line = raw.count(b"\n", 0, start) + 1
        column = start - (raw.rfind(b"\n", 0, start) + 1) + 1
        raise ConfigError(
            f"config file is not UTF-8 text: byte 0x{raw[start]:02x} at line {line}, column {column}",
            where=f"{source}, line {line}",
            fix="save the file as UTF-8 (most editors: 'Save with encoding' / 'Reopen with encoding')",
        ) from None


def parse_yaml_mapping(text: str, source: str) -> dict[str, Any]:
    """The mapping `text` holds (`{}` when empty).

    Raises:
        ConfigError: not YAML, a repeated key, or not a mapping; `where` names the file and line.
    """
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except DuplicateKeyError as error:
        raise ConfigError(
            f"key {error.key!r} is written twice (lines {error.first_line} and {error.second_line}); "
            "YAML would silently keep the second",
            where=f"{source}, line {error.second_line}",
            fix=f"keep one '{error.key}:' line",
        ) from None
    except yaml.YAMLError as error:
        raise _syntax_error(error, source) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file must be a YAML mapping of key: value, got a {type(data).__name__}", where=source
        )
    return data


def _syntax_error(error: yaml.YAMLError, source: str) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    what = f"config file is not valid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return ConfigError(what, where=source, fix="fix the YAML syntax")
    lines = (mark.buffer or "").rstrip("\0").splitlines()
    line_text = lines[mark.line] if mark.line < len(lines) else ""
    return ConfigError(
        what,
        where=f"{source}, line {mark.line + 1}, column {mark.column + 1}" + (f": {line_text.strip()}" if line_text.strip() else ""),
        fix="fix the YAML syntax there (an unclosed bracket or quote, a tab, or a missing ': ' are the usual causes)",
    )
