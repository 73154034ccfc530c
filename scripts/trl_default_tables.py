"""Generate grpokit's tables of TRL's GRPOConfig defaults, one JSON file per released TRL version.

`trl_defaults: 0.17.0` in a grpokit config reads `src/grpokit/config/trl_defaults/0.17.0.json`. This
script writes those files from the real released packages, never by hand:

1. `pip download trl==<version> --no-deps` fetches the wheel from the package registry (PyPI);
2. `trl/trainer/grpo_config.py` (and the TRL base classes `GRPOConfig` derives from, such as
   `_BaseConfig` in `base_config.py`) is read out of the wheel and parsed with `ast`: nothing is
   imported, so old versions need none of their old dependencies;
3. every field those class bodies declare, with its default, goes into `defaults`;
4. a field that some TRL version declares but this one leaves to transformers' `TrainingArguments`
   (`logging_steps`, `bf16`, `gradient_checkpointing`, ...) takes the default of the oldest
   transformers this TRL version accepts (its `Requires-Dist: transformers>=X`), read the same way
   from that transformers wheel, into `inherited`;
5. every field of that transformers release's `TrainingArguments` (what a `trl grpo` config of that
   TRL could set: `warmup_ratio`, `overwrite_output_dir`, ...), with its default, goes into
   `training_arguments/<transformers version>.json`, one file per transformers floor.

Usage (from the repository root, with the project's virtualenv):

    .venv/bin/python scripts/trl_default_tables.py                      # every release from 0.14.0 to the installed TRL
    .venv/bin/python scripts/trl_default_tables.py --wheels /tmp/wheels # keep the downloads for a rerun
    .venv/bin/python scripts/trl_default_tables.py --check              # exit 1 if a table differs from its wheels

`tests/test_fidelity_trl_defaults.py` checks the table of the installed TRL against its `GRPOConfig`.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
TABLE_DIR = ROOT / "src" / "grpokit" / "config" / "trl_defaults"
TRAINING_ARGUMENTS_DIR = TABLE_DIR / "training_arguments"
FIRST_VERSION = Version("0.14.0")  # the first TRL release with GRPOTrainer
CONFIG_MODULE = "trl/trainer/grpo_config.py"
UNREADABLE = object()


def released_versions() -> list[str]:
    """Every final TRL release from 0.14.0 to the installed version, from `pip index versions trl`."""
    import trl

    output = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "trl"], capture_output=True, text=True, check=True
    ).stdout
    line = next(text for text in output.splitlines() if text.startswith("Available versions:"))
    versions = [Version(text.strip()) for text in line.split(":", 1)[1].split(",")]
    installed = Version(trl.__version__)
    return [str(v) for v in sorted(versions) if not v.is_prerelease and FIRST_VERSION <= v <= installed]


def download_wheel(package: str, version: str, directory: Path) -> Path:
    """The pure-Python wheel of `package==version`, downloaded into `directory` unless already there."""
    wheel = directory / f"{package}-{version}-py3-none-any.whl"
    if not wheel.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"{package}=={version}", "--no-deps", "--only-binary=:all:",
             "-d", str(directory), "-q"],
            check=True,
        )  # fmt: skip
    return wheel


def _default_of(call_or_value: ast.expr):
    """The default a dataclass field declares: `= value`, `field(default=...)` or `field(default_factory=...)`."""
    if isinstance(call_or_value, ast.Call) and getattr(call_or_value.func, "id", None) == "field":
        keywords = {keyword.arg: keyword.value for keyword in call_or_value.keywords}
        if "default" in keywords:
            return _literal(keywords["default"])
        factory = keywords.get("default_factory")
        if isinstance(factory, ast.Name) and factory.id in ("list", "dict"):
            return [] if factory.id == "list" else {}
        if isinstance(factory, ast.Lambda):
            return _literal(factory.body)
        return UNREADABLE
    return _literal(call_or_value)


def _literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return UNREADABLE


def class_defaults(tree: ast.Module, name: str) -> tuple[dict, dict]:
    """(field -> default, field -> source of a default that is not a literal) declared by class `name`."""
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)
    defaults, unreadable = {}, {}
    for statement in cls.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        if statement.value is None:
            continue  # declared without a default: required, not a default
        value = _default_of(statement.value)
        if value is UNREADABLE:
            unreadable[statement.target.id] = ast.unparse(statement.value)[:200]
        else:
            defaults[statement.target.id] = value
    return defaults, unreadable


def _local_base_module(tree: ast.Module, base: str, module_path: str) -> str | None:
    """The wheel path of the module a TRL base class is imported from (`from .base_config import _BaseConfig`)."""
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and any(alias.name == base for alias in node.names) and node.level:
            package = module_path.rsplit("/", node.level)[0]
            return f"{package}/{(node.module or '').replace('.', '/')}.py"
    return None


def trl_declared_defaults(archive: zipfile.ZipFile, module_path: str = CONFIG_MODULE, name: str = "GRPOConfig"):
    """Defaults declared by `name` and by the TRL classes it derives from (bases first, then its own)."""
    tree = ast.parse(archive.read(module_path).decode("utf-8"))
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)
    defaults, unreadable = {}, {}
    for base in cls.bases:
        base_name = ast.unparse(base)
        base_module = _local_base_module(tree, base_name, module_path)
        if base_module is not None:  # a TRL class (TrainingArguments comes from transformers)
            base_defaults, base_unreadable = trl_declared_defaults(archive, base_module, base_name)
            defaults.update(base_defaults)
            unreadable.update(base_unreadable)
    own, own_unreadable = class_defaults(tree, name)
    defaults.update(own)
    unreadable.update(own_unreadable)
    for key in own:
        unreadable.pop(key, None)
    return defaults, unreadable


def transformers_floor(archive: zipfile.ZipFile, version: str) -> str:
    """The oldest transformers this TRL wheel accepts (`Requires-Dist: transformers>=X` without a marker)."""
    metadata = archive.read(f"trl-{version}.dist-info/METADATA").decode("utf-8")
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist: transformers"):
            requirement = Requirement(line.split(":", 1)[1].strip())
            floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
            if requirement.marker is None and floors:
                return floors[0]
    raise SystemExit(f"trl {version}: no transformers>=X requirement in its METADATA")


def training_arguments_defaults(version: str, wheels: Path) -> dict:
    """`TrainingArguments` field defaults of a transformers release, read from its wheel."""
    wheel = download_wheel("transformers", version, wheels)
    with zipfile.ZipFile(wheel) as archive:
        tree = ast.parse(archive.read("transformers/training_args.py").decode("utf-8"))
    return class_defaults(tree, "TrainingArguments")[0]


def _init_false(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and any(
        keyword.arg == "init" and isinstance(keyword.value, ast.Constant) and keyword.value.value is False
        for keyword in value.keywords
    )


def training_arguments_table(version: str, wheels: Path) -> dict:
    """Every `__init__` field of a transformers release's `TrainingArguments` with its default (None when it
    has none or the default is not a literal, listed in `not_literal`)."""
    wheel = download_wheel("transformers", version, wheels)
    with zipfile.ZipFile(wheel) as archive:
        tree = ast.parse(archive.read("transformers/training_args.py").decode("utf-8"))
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "TrainingArguments")
    fields, unreadable = {}, {}
    for statement in cls.body:
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        name = statement.target.id
        if name.startswith("_") or _init_false(statement.value):
            continue
        value = UNREADABLE if statement.value is None else _default_of(statement.value)
        fields[name] = None if value is UNREADABLE else value
        if value is UNREADABLE:
            unreadable[name] = "(no default)" if statement.value is None else ast.unparse(statement.value)[:200]
    return {
        "transformers_version": version,
        "generated_by": "scripts/trl_default_tables.py",
        "source": f"{wheel.name}: transformers/training_args.py (class TrainingArguments)",
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "fields": fields,
        "not_literal": unreadable,
    }


def table_for(version: str, wheels: Path) -> dict:
    wheel = download_wheel("trl", version, wheels)
    with zipfile.ZipFile(wheel) as archive:
        defaults, unreadable = trl_declared_defaults(archive)
        floor = transformers_floor(archive, version)
    return {
        "trl_version": version,
        "generated_by": "scripts/trl_default_tables.py",
        "source": f"{wheel.name}: {CONFIG_MODULE} (class GRPOConfig and its TRL base classes)",
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "defaults": defaults,
        "not_literal": unreadable,
        "inherited_from": f"transformers {floor} TrainingArguments (the oldest transformers trl {version} accepts)",
        "transformers_floor": floor,
        "inherited": {},
    }


def add_inherited(tables: list[dict], wheels: Path) -> None:
    """Fill `inherited`: fields some TRL version declares that this one leaves to TrainingArguments."""
    shipped = [json.loads(path.read_text(encoding="utf-8")) for path in TABLE_DIR.glob("*.json")]
    declared_somewhere = set().union(*(table["defaults"] for table in [*tables, *shipped]))  # --versions: a subset
    by_floor: dict[str, dict] = {}
    for table in tables:
        floor = table["transformers_floor"]
        if floor not in by_floor:
            by_floor[floor] = training_arguments_defaults(floor, wheels)
        arguments = by_floor[floor]
        missing = sorted(declared_somewhere - set(table["defaults"]) - set(table["not_literal"]))
        table["inherited"] = {key: arguments[key] for key in missing if key in arguments}


def table_text(table: dict) -> str:
    return json.dumps(table, indent=1, sort_keys=False, allow_nan=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", nargs="*", help="TRL versions (default: every release from 0.14.0 to the installed one)")
    parser.add_argument("--wheels", type=Path, help="Keep downloaded wheels here (default: a temporary directory)")
    parser.add_argument("--check", action="store_true", help="Compare the shipped tables with the wheels; write nothing")
    arguments = parser.parse_args()
    versions = arguments.versions or released_versions()
    TABLE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temporary:
        wheels = arguments.wheels or Path(temporary)
        wheels.mkdir(parents=True, exist_ok=True)
        tables = [table_for(version, wheels) for version in versions]
        add_inherited(tables, wheels)
        floors = sorted({table["transformers_floor"] for table in tables}, key=Version)
        argument_tables = [training_arguments_table(floor, wheels) for floor in floors]
    TRAINING_ARGUMENTS_DIR.mkdir(parents=True, exist_ok=True)
    stale = []
    for argument_table in argument_tables:
        path = TRAINING_ARGUMENTS_DIR / f"{argument_table['transformers_version']}.json"
        if arguments.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != table_text(argument_table):
                stale.append(f"transformers {argument_table['transformers_version']}")
        else:
            path.write_text(table_text(argument_table), encoding="utf-8")
            print(f"{path.relative_to(ROOT)}: {len(argument_table['fields'])} TrainingArguments fields")
    for table in tables:
        path = TABLE_DIR / f"{table['trl_version']}.json"
        if arguments.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != table_text(table):
                stale.append(table["trl_version"])
            continue
        path.write_text(table_text(table), encoding="utf-8")
        skipped = f", {len(table['not_literal'])} not literal ({', '.join(table['not_literal'])})" if table["not_literal"] else ""
        print(f"{path.relative_to(ROOT)}: {len(table['defaults'])} TRL fields, {len(table['inherited'])} inherited{skipped}")
    if stale:
        print(f"tables that differ from their wheels: {', '.join(stale)}; rerun without --check", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
