"""The docs stay true: the config reference is generated from the schema, and every example parses."""

from __future__ import annotations

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
