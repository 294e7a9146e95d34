"""environment.yml (conda) must list the same packages and pins as pyproject.toml."""

from __future__ import annotations

from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]


def _pins(lines: list[str]) -> dict[str, str]:
    """Map canonical package name -> normalised specifier string (e.g. ``"==3.3.0"``)."""
    out: dict[str, str] = {}
    for line in lines:
        req = Requirement(line)
        out[canonicalize_name(req.name)] = str(SpecifierSet(str(req.specifier)))
    return out


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _environment() -> dict:
    return yaml.safe_load((REPO / "environment.yml").read_text(encoding="utf-8"))


def _env_pip_lines(env: dict) -> list[str]:
    pip_blocks = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    if len(pip_blocks) != 1:
        raise ValueError(f"environment.yml: expected one `pip:` block, found {len(pip_blocks)}")
    return [str(x) for x in pip_blocks[0]]


def test_environment_lists_the_same_packages_as_pyproject() -> None:
    project = _pyproject()["project"]
    expected = _pins(project["dependencies"] + project["optional-dependencies"]["dev"])
    lines = [x for x in _env_pip_lines(_environment()) if not x.startswith("-e")]
    got = _pins(lines)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, f"environment.yml vs pyproject: missing {missing}, extra {extra}"
    differing = {n: (got[n], expected[n]) for n in expected if got[n] != expected[n]}
    assert not differing, f"environment.yml pins differ from pyproject (env, pyproject): {differing}"


def test_environment_installs_the_toolkit_and_a_supported_python() -> None:
    env = _environment()
    assert "-e ." in _env_pip_lines(env), "environment.yml must install the checkout itself (`-e .`)"
    pythons = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert len(pythons) == 1, f"environment.yml: expected one python pin, got {pythons}"
    version = pythons[0].split("=", 1)[1].lstrip("=")
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert requires.contains(version + ".0"), f"python {version} does not satisfy requires-python {requires}"
