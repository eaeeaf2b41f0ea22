"""The install contract: the README's two set-up commands are what CI runs, and the constraint files
agree with pyproject.toml's window (docs/install.md)."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _version(text: str) -> tuple[int, ...]:
    parts = [int(x) for x in re.findall(r"\d+", text)[:3]]
    return tuple(parts + [0] * (3 - len(parts)))  # "1.10" == "1.10.0"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path}: {line!r} is not a name==version pin"
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["test"]


def _bounds(name: str) -> tuple[str | None, str | None]:
    for requirement in _requirements():
        if re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() == name:
            low = re.search(r">=\s*([0-9][^,; ]*)", requirement)
            high = re.search(r"<\s*([0-9][^,; ]*)", requirement)
            return (low.group(1) if low else None, high.group(1) if high else None)
    raise AssertionError(f"pyproject.toml does not declare {name}")


def test_the_readme_holds_the_two_commands_ci_runs():
    commands = _tool("readme_commands").setup_commands((ROOT / "README.md").read_text())
    assert len(commands) == 2
    demo, tests = commands
    # the demo runs on the base install: an import that only an extra provides fails it
    assert re.fullmatch(r"pip install -e \. && pefomed demo", demo), demo
    assert '".[test]"' in tests and tests.endswith("python -m pytest"), tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert "tools/readme_commands.py README.md" in ci and "python3 -m venv" in ci
    assert "mktemp -d" in ci  # a brand-new virtualenv each run, never the machine's packages


def test_a_bash_block_with_two_commands_is_refused():
    readme = "## Set up on a fresh machine\n\n```bash\npip install -e .\npefomed demo\n```\n"
    with pytest.raises(SystemExit, match="one command line"):
        _tool("readme_commands").setup_commands(readme)


def test_the_window_is_bounded_above_and_the_constraint_files_sit_inside_it():
    window = _tool("check_window").WINDOW
    tested = _pins(ROOT / "constraints" / "tested.txt")
    lowest = _pins(ROOT / "constraints" / "lowest.txt")
    for name in window:
        low, high = _bounds(name)
        assert high is not None, f"pyproject.toml: {name} has no upper bound (docs/install.md)"
        assert name in tested, f"constraints/tested.txt does not pin {name}"
        assert _version(tested[name]) < _version(high), (name, tested[name], high)
        if low is not None:
            assert _version(tested[name]) >= _version(low), (name, tested[name], low)
            # the lowest check pins exactly the claimed lower bound (what the GPU machines run)
            assert name in lowest and _version(lowest[name]) == _version(low), (name, lowest.get(name), low)


def test_lifting_bounds_keeps_the_lower_ones():
    lift = _tool("check_window")._without_upper_bound
    assert lift("torch>=2.11,<2.15") == "torch>=2.11"
    assert lift("kernels<0.20") == "kernels"
    assert lift("numpy>=1.26") == "numpy>=1.26"  # not in the window: untouched
