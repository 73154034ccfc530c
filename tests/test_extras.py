"""grpokit's optional extras ask for what the installed TRL accepts, read from TRL's own package metadata."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def extra_requirements(package: str, extra: str) -> list[Requirement]:
    """The requirements of `package`'s `extra`, from its installed metadata (grpokit's: pyproject.toml as installed)."""
    found = []
    for text in importlib.metadata.requires(package) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
            found.append(requirement)
    return found


def extras() -> dict[str, list[Requirement]]:
    return {extra: extra_requirements("grpokit", extra) for extra in ("vllm", "gpu", "dev")}


def trl_extra(extra: str) -> dict[str, Requirement]:
    """The requirements of TRL's `extra`, by package name, from the installed TRL's metadata."""
    return {requirement.name: requirement for requirement in extra_requirements("trl", extra)}


def test_the_vllm_extra_is_trls_own_vllm_extra():
    (requirement,) = extras()["vllm"]
    assert requirement.name == "trl" and requirement.extras == {"vllm"}, "grpokit[vllm] must be trl[vllm], never a range of its own"
    installed_trl = Version(importlib.metadata.version("trl"))
    declared = [Requirement(text) for text in importlib.metadata.requires("grpokit")]
    (trl_dependency,) = [requirement for requirement in declared if requirement.name == "trl" and requirement.marker is None]
    assert installed_trl in trl_dependency.specifier, "trl[vllm] resolves against the TRL grpokit depends on"
    vllm = trl_extra("vllm")["vllm"]
    assert any(spec.operator in ("<", "<=") for spec in vllm.specifier), "TRL caps the vLLM versions it supports"


def test_the_docs_state_the_vllm_range_of_the_installed_trl():
    vllm = trl_extra("vllm")["vllm"]
    bounds = sorted(vllm.specifier, key=lambda spec: spec.operator, reverse=True)  # >= before <=
    stated = f"TRL {importlib.metadata.version('trl')}: `vllm{','.join(str(spec) for spec in bounds)}`"
    text = " ".join((ROOT / "docs" / "distributed.md").read_text(encoding="utf-8").split())
    assert stated in text, f"docs/distributed.md must say {stated!r}: {re.findall(r'TRL [0-9.]+: `vllm[^`]*`', text)}"


def test_bitsandbytes_in_the_extras_is_a_version_trl_accepts_and_the_pinned_one_is_in_both():
    trl_bitsandbytes = trl_extra("quantization")["bitsandbytes"]
    pinned = next(
        Version(line.split("==")[1])
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if line.startswith("bitsandbytes==")
    )
    for extra in ("gpu", "dev"):
        (ours,) = [requirement for requirement in extras()[extra] if requirement.name == "bitsandbytes"]
        lowest = Version(next(spec.version for spec in ours.specifier if spec.operator == ">="))
        assert lowest in trl_bitsandbytes.specifier, f"grpokit[{extra}] allows a bitsandbytes TRL does not"
        assert pinned in ours.specifier and pinned in trl_bitsandbytes.specifier


def test_a_sagemaker_job_with_vllm_installs_trls_vllm_extra_at_this_trl():
    from grpokit.launch.sagemaker.plan import requirement_lines

    version = importlib.metadata.version("trl")
    assert f"trl[vllm]=={version}" in requirement_lines({"use_vllm": True})
    assert not any("vllm" in line for line in requirement_lines({}))
    assert f"bitsandbytes=={importlib.metadata.version('bitsandbytes')}" in requirement_lines({"load_in_4bit": True})


def test_every_extra_a_missing_package_error_names_is_declared():
    """`config.packages` tells a user `pip install 'grpokit[X]'`: X must be one of pyproject.toml's extras."""
    import tomllib

    from grpokit.config import packages

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"])
    named = set(re.findall(r"grpokit\[(\w+)\]", Path(packages.__file__).read_text(encoding="utf-8")))
    assert named and named <= declared, f"extras named but not declared: {named - declared}"
    assert {"liger", "deepspeed"} <= named
