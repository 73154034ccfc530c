"""The docs stay true: the config reference is generated from the schema, and every example parses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from grpokit.config import config_reference_markdown, load_config

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN GENERATED: grpokit keys --markdown -->\n"
END = "<!-- END GENERATED -->"


def test_config_reference_in_docs_matches_the_schema():
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    generated = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated == config_reference_markdown(), "regenerate docs/config.md: see the comment in that file"


EXAMPLE_CONFIGS = sorted(
    path for path in (ROOT / "examples").rglob("*.yaml") if "accelerate" not in path.parts and "presets" not in path.parts
)


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_example_config_parses(path):
    config = load_config(path, cuda_available=False)
    assert config.options.model_id


# ----------------------------------------------------------------------------- the README's performance figures

BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture
def benchmark_modules(monkeypatch):
    """benchmarks/ on the import path, as when a script there runs."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import readme_figures

    return readme_figures


def test_readme_performance_figures_are_the_results_files(benchmark_modules):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert benchmark_modules.readme_block(readme) == benchmark_modules.render(), (
        "README.md's performance figures differ from benchmarks/results: run .venv/bin/python benchmarks/readme_figures.py"
    )


def test_the_performance_section_states_no_figure_outside_the_generated_block(benchmark_modules):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Performance\n", 1)[1].split("\n## ", 1)[0]
    prose = section.split(benchmark_modules.BEGIN, 1)[0] + section.split(benchmark_modules.END, 1)[1]
    figures = re.findall(r"\d+(?:\.\d+)?\s*(?:x\b|s\b|%|MB\b|minutes?\b)", prose)
    assert not figures, f"figures belong in the generated block, taken from benchmarks/results: {figures}"


@pytest.mark.parametrize("name", ["overhead", "step_profile", "data_efficiency", "time_to_target", "startup_errors"])
def test_each_results_table_is_rendered_from_its_json(name, benchmark_modules):
    import importlib

    payload = benchmark_modules.load_results(name)
    if payload is None:
        assert not (BENCHMARKS / "results" / f"{name}.md").exists(), "a table without the results file it came from"
        return
    script = importlib.import_module(name)
    render = getattr(script, "markdown", None) or script.markdown_table
    assert (BENCHMARKS / "results" / f"{name}.md").read_text(encoding="utf-8") == render(payload)
    assert payload["command"].startswith(f".venv/bin/python benchmarks/{name}.py")
    assert {"cpu_cores", "versions"} <= set(payload["machine"]) and len(payload["load_average_after"]) == 3
