"""The field names of TRL's config dataclasses, read from TRL's installed source without importing it.

Importing `trl.GRPOConfig` takes seconds (it loads torch and transformers). Whether a config key is
a TRL field only needs the names, which the source states: `dataclass_field_names("trl", "GRPOConfig")`
follows the imports from `trl/__init__.py` to the class, reads its annotated fields and those of its
bases (`_BaseConfig`, transformers' `TrainingArguments`) with `ast`, and returns them. Nothing is
copied into grpokit and nothing is cached: it is read from whatever TRL is installed, in about 30 ms.

When the source is not laid out as expected (a base class it cannot follow, a class built at run
time), it returns None and the caller asks the imported class instead: slower, never wrong.
`tests/test_config_files.py` checks the names against `dataclasses.fields` of the installed TRL.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

MAX_IMPORT_HOPS = 12  # re-exports followed before giving up (trl -> trl.trainer -> trl.trainer.grpo_config)


class _Unsure(Exception):
    """The source does not say for certain; the caller falls back to importing the class."""


@functools.cache
def dataclass_field_names(module: str, class_name: str) -> frozenset[str] | None:
    """The `__init__` field names of dataclass `module.class_name` and its dataclass bases, or None when unsure."""
    try:
        found_in, node = _find_class(module, class_name, hops=0)
        return frozenset(_field_names(found_in, node, hops=0))
    except (_Unsure, OSError, SyntaxError, ValueError):
        return None


@functools.cache
def _module_source(module: str) -> tuple[Path, ast.Module, bool]:
    """(file, parsed source, is a package) of `module`, found without importing it or its parents."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level name is located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise _Unsure(module)
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    if (path / "__init__.py").is_file():
        file, is_package = path / "__init__.py", True
    elif path.with_suffix(".py").is_file():
        file, is_package = path.with_suffix(".py"), False
    else:
        raise _Unsure(module)
    return file, ast.parse(file.read_text(encoding="utf-8")), is_package


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    _, _, is_package = _module_source(module)
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def _find_class(module: str, name: str, *, hops: int) -> tuple[str, ast.ClassDef]:
    """The module that defines class `name` as seen from `module`, and its definition."""
    if hops > MAX_IMPORT_HOPS:
        raise _Unsure(name)
    _, tree, _ = _module_source(module)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
    for node in ast.walk(tree):  # re-exports, also those under `if TYPE_CHECKING:` of a lazy package
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    return _find_class(_absolute(module, node), alias.name, hops=hops + 1)
    raise _Unsure(name)


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
            isinstance(target, ast.Attribute) and target.attr == "dataclass"
        ):
            return True
    return False


def _annotation_head(annotation: ast.expr) -> str:
    target = annotation.value if isinstance(annotation, ast.Subscript) else annotation
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Constant) and isinstance(target.value, str):  # a string annotation
        return target.value.split("[", 1)[0].rsplit(".", 1)[-1]
    return ""


def _init_false(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and any(
        keyword.arg == "init" and isinstance(keyword.value, ast.Constant) and keyword.value.value is False
        for keyword in value.keywords
    )


def _field_names(module: str, node: ast.ClassDef, *, hops: int) -> list[str]:
    if hops > MAX_IMPORT_HOPS:
        raise _Unsure(node.name)
    names: list[str] = []
    for base in node.bases:
        if isinstance(base, ast.Name) and base.id == "object":
            continue
        if not isinstance(base, ast.Name):  # `module.Class`, `Generic[T]`: not followed
            raise _Unsure(node.name)
        base_module, base_node = _find_class(module, base.id, hops=0)
        names += _field_names(base_module, base_node, hops=hops + 1)
    if node.keywords or not _is_dataclass(node):  # a metaclass, or fields made some other way
        if node.keywords or any(isinstance(item, ast.AnnAssign) for item in node.body):
            raise _Unsure(node.name)
        return names
    for item in node.body:
        if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
            continue
        if _annotation_head(item.annotation) in ("ClassVar", "InitVar") or _init_false(item.value):
            continue
        names.append(item.target.id)
    return names
