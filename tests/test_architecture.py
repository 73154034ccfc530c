"""The package's layout keeps its promises: no import cycle, small modules, one door per private API.

These read the source (with `ast`), so they fail the moment a change breaks a rule, with the module
and the line that broke it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "grpokit"
MAX_MODULE_LINES = 400
# The doors to other libraries' private APIs: the only modules allowed to touch `obj._name`.
COMPAT_MODULES = {"grpokit.compat.trl_internals", "grpokit.compat.sagemaker_internals", "grpokit.compat.tracking_internals"}
# Commands built on the pipeline; only the demo runs the recipe, through its public entry point.
COMMAND_MODULES = {
    "grpokit.commands.validate", "grpokit.commands.rewards", "grpokit.commands.evaluate",
    "grpokit.commands.probe", "grpokit.commands.probe_figures",
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str) -> list[tuple[str, int, list[str]]]:
    """(imported grpokit module, line, names) for every import in the module, inside functions too."""
    path = MODULES[name]
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, []) for alias in node.names if alias.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [alias.name for alias in node.names]
            for alias in names:
                if f"{target}.{alias}" in MODULES:  # `from grpokit.rewards import length`: the submodule
                    found.append((f"{target}.{alias}", node.lineno, []))
                elif target in MODULES:
                    found.append((target, node.lineno, [alias]))
    return found


def import_graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in imported_modules(name)} for name in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    assert cycles(import_graph()) == []


def package_of(name: str) -> str:
    """The top-level room a module belongs to: `grpokit.config.loading` -> `grpokit.config`; a root module is its own."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or MODULES[name].name == "__init__.py" else name


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The import graph between rooms (packages under grpokit, and root modules), imports inside a room left out."""
    rooms: dict[str, set[str]] = {}
    for name, targets in graph.items():
        rooms.setdefault(package_of(name), set()).update(package_of(target) for target in targets)
    return {room: targets - {room} for room, targets in rooms.items()}


def test_the_package_graph_groups_modules_into_rooms():
    assert package_of("grpokit.config.loading") == "grpokit.config"
    assert package_of("grpokit.trainer.dynamic_sampling.rounds") == "grpokit.trainer"
    assert package_of("grpokit.errors") == "grpokit.errors"
    graph = {"grpokit.a.x": {"grpokit.b.y"}, "grpokit.b.y": {"grpokit.a.z"}, "grpokit.a.z": set()}
    assert cycles(package_graph(graph)) == [["grpokit.a", "grpokit.b"]]


def test_no_import_cycle_between_packages():
    # config -> data -> model -> rewards -> trainer -> outputs, with the commands and launchers on top:
    # a stage never imports one that comes after it, so a cycle between packages is a layering break.
    edges = {
        f"{package_of(name)} -> {package_of(target)}: {name}"
        for name in MODULES
        for target, _, _ in imported_modules(name)
        if package_of(name) != package_of(target)
    }
    broken = [
        edge
        for component in cycles(package_graph(import_graph()))
        for edge in sorted(edges)
        if edge.split(" -> ")[0] in component and edge.split(" -> ")[1].split(":")[0] in component
    ]
    assert broken == [], "the packages import each other; one of these imports must go"


def test_a_module_inside_a_package_never_imports_its_own_package_init():
    # `from grpokit.config import X` inside grpokit.config.* would run config/__init__ half-way through.
    offenders = [
        f"{name}:{line} imports from {target}"
        for name in MODULES
        for target, line, names in imported_modules(name)
        if names and name.startswith(target + ".") and MODULES[target].name == "__init__.py"
    ]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_over_400_lines(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines; split it by concern"


def test_commands_do_not_import_from_the_training_recipe():
    offenders = [
        f"{name}:{line} imports {target}"
        for name in COMMAND_MODULES
        for target, line, _ in imported_modules(name)
        if target.startswith("grpokit.trainer")
    ]
    assert offenders == []
    for demo in ("grpokit.commands.demo", "grpokit.commands.demo_aws_sample"):
        demo_imports = [(target, names) for target, _, names in imported_modules(demo)]
        assert all(names == ["train"] for target, names in demo_imports if target.startswith("grpokit.trainer"))


def private_accesses(name: str, source: str | None = None) -> list[str]:
    """`obj._name` (obj not self / cls) and `getattr(obj, "_name")` in a module: reaching into another's privates."""
    tree = ast.parse(source if source is not None else MODULES[name].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and re.match(r"^_[^_]", node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{name}:{node.lineno} .{node.attr}")
        elif _is_getattr_of_private(node):
            found.append(f"{name}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return found


def _is_getattr_of_private(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and bool(re.match(r"^_[^_]", str(node.args[1].value)))
    )


def test_the_private_access_finder_sees_both_spellings():
    source = "trainer._logs\ngetattr(trainer, '_logs', None)\nself._mine\nobj.__name__\n"
    assert private_accesses("example", source) == ["example:1 ._logs", "example:2 getattr(..., '_logs')"]


def test_only_the_compat_modules_touch_other_libraries_private_attributes():
    offenders = [hit for name in MODULES if name not in COMPAT_MODULES for hit in private_accesses(name)]
    assert offenders == []


def test_every_private_access_in_compat_names_the_version_it_was_checked_against():
    for name in COMPAT_MODULES:
        lines = MODULES[name].read_text(encoding="utf-8").splitlines()
        for hit in private_accesses(name):
            line = lines[int(hit.split(":")[1].split()[0]) - 1]
            assert re.search(r"# (private|public).* in [A-Za-z-]+ \d+\.\d+", line), f"{hit}: say which version it was checked against"


def test_private_methods_of_other_libraries_are_overridden_only_in_compat():
    # A class that subclasses a library class and redefines one of that class's `_name` methods reaches
    # into the library's privates. Module-level classes are checked against their real bases.
    import importlib
    import inspect

    offenders = []
    for name in sorted(set(MODULES) - COMPAT_MODULES - {"grpokit.__main__"}):  # importing __main__ runs the CLI
        module = importlib.import_module(name)
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != name:
                continue
            foreign = [base for base in cls.__mro__[1:] if not base.__module__.startswith("grpokit")]
            for attribute, value in vars(cls).items():
                function = getattr(value, "fget", value)  # a property's getter
                written_here = getattr(function, "__qualname__", "").startswith(cls.__qualname__ + ".")
                if written_here and re.match(r"^_[^_]", attribute) and any(attribute in vars(base) for base in foreign):
                    offenders.append(f"{name}.{cls.__name__}.{attribute}")
        nested = [
            node
            for function in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8")))
            if isinstance(function, ast.FunctionDef)
            for node in ast.walk(function)
            if isinstance(node, ast.ClassDef) and node.bases
        ]
        offenders += [f"{name}: class {node.name} defined in a function subclasses {ast.unparse(node.bases[0])}" for node in nested]
    assert offenders == []


def string_literals(name: str) -> list[tuple[int, str]]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("file_name", ["metrics.jsonl", "grpokit_config.yaml", "sample_completions.jsonl", "grpokit_complete.json", "report.html", "summary.json"])
def test_every_run_file_is_named_in_one_place(file_name):
    owners = [f"{name}:{line}" for name in MODULES for line, text in string_literals(name) if text == file_name]
    assert owners and all(owner.startswith("grpokit.outputs.files:") for owner in owners), owners


def test_writes_then_renames_live_in_one_place():
    offenders = [
        f"{name}:{node.lineno}"
        for name in MODULES
        if name != "grpokit.outputs.files"
        for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr == "replace" and ast.unparse(node.value) in ("os", "tmp")
    ]
    assert offenders == []


def test_one_number_formatter():
    definitions = [
        f"{name}:{node.lineno}"
        for name in MODULES
        for node in ast.walk(ast.parse(MODULES[name].read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef) and node.name in ("fmt", "_fmt", "format_number")
    ]
    assert definitions == ["grpokit.formatting:9"] or (len(definitions) == 1 and definitions[0].startswith("grpokit.formatting:"))


def test_the_report_template_is_a_package_data_file():
    from grpokit.outputs.report import REPORT_TEMPLATE_FILE, report_template

    assert (PACKAGE / "outputs" / REPORT_TEMPLATE_FILE).is_file()
    assert report_template().lstrip().startswith("<!DOCTYPE html>")
    assert "<!DOCTYPE html>" not in MODULES["grpokit.outputs.report"].read_text(encoding="utf-8")


def test_the_architecture_page_names_every_module():
    page = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [name for name in MODULES if name.count(".") and name.rsplit(".", 1)[1] not in page and name != "grpokit.__main__"]
    assert missing == [], "docs/architecture.md should say which room owns these"
