"""Check pefomed's dependency window against real releases, each in a brand-new virtualenv.

    python tools/check_window.py newest [--keep DIR] [-- PYTEST ARGS]
    python tools/check_window.py lowest [--keep DIR] [-- PYTEST ARGS]
    python tools/check_window.py record            # constraints/tested.txt from the running venv

`newest` lifts the upper bounds of the fast-moving stack (WINDOW below), installs pefomed[test] with
whatever the index serves today, runs the whole suite and says, for each bound, whether it can move
(the suite passed with a release above it) or must stay (it failed; the versions are printed so
the failure can be reproduced). `lowest` installs pefomed[test] pinned to constraints/lowest.txt
(the lowest versions pyproject.toml claims: the GPU machines' stack) and runs the fast tests.
`record` writes the exact versions of the environment it runs in to constraints/tested.txt: run it
in the virtualenv where the README's commands last passed (docs/install.md).

Standard library only, so it runs before anything is installed. It only reports: moving a bound is
an edit to pyproject.toml that a person makes after reading the result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the distributions whose releases have broken us or are likely to: bounded above in pyproject.toml
WINDOW = ("torch", "transformers", "peft", "deepspeed", "accelerate", "kernels", "bitsandbytes")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()


def _requirements() -> tuple[list[str], list[str]]:
    """(base dependencies, test extra) as pyproject.toml declares them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]), list(project["optional-dependencies"]["test"])


def _without_upper_bound(requirement: str) -> str:
    """'torch>=2.11,<2.15' -> 'torch>=2.11': the release the index calls newest is what gets installed."""
    name = _name(requirement)
    if name not in WINDOW:
        return requirement
    spec = requirement[len(name):]
    kept = [part.strip() for part in spec.split(",") if part.strip() and not part.strip().startswith("<")]
    return name + ",".join(kept)


def _upper_bound(requirements: list[str], name: str) -> str | None:
    for requirement in requirements:
        if _name(requirement) == name:
            match = re.search(r"<\s*([0-9][^,; ]*)", requirement)
            return match.group(1) if match else None
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3])


def _run(cmd: list[str], **kwargs) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, **kwargs).returncode


def _new_venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    return where / "bin" / "python"


def _installed(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], check=True,
                         capture_output=True, text=True).stdout
    return {row["name"].lower(): row["version"] for row in json.loads(out)}


def newest(venv: Path, pytest_args: list[str]) -> int:
    base, test = _requirements()
    python = _new_venv(venv)
    lifted = [_without_upper_bound(r) for r in base + test]
    # pefomed without its own requirements (they would re-impose the bounds), then the lifted ones
    if _run([str(python), "-m", "pip", "install", "--upgrade", *lifted]) != 0:
        print("installing the newest releases failed: see pip's message above")
        return 1
    if _run([str(python), "-m", "pip", "install", "--no-deps", "-e", str(ROOT)]) != 0:
        return 1
    versions = _installed(python)
    passed = _run([str(python), "-m", "pytest", *pytest_args], cwd=ROOT) == 0
    print("\nnewest releases, suite " + ("PASSED" if passed else "FAILED"))
    for name in WINDOW:
        bound, got = _upper_bound(base + test, name), versions.get(name)
        if got is None:
            print(f"  {name:13s} not installed")
        elif bound is None:
            print(f"  {name:13s} {got:12s} (no upper bound)")
        elif _version_tuple(got) < _version_tuple(bound):
            print(f"  {name:13s} {got:12s} inside <{bound}: nothing newer to test")
        elif passed:
            print(f"  {name:13s} {got:12s} above <{bound}: the bound can move past {got}")
        else:
            print(f"  {name:13s} {got:12s} above <{bound}: keep the bound (or fix what failed)")
    print("pip's own configuration (e.g. /etc/xdg/pip constraints) still applies; `pip config list` shows it")
    return 0 if passed else 1


def lowest(venv: Path, pytest_args: list[str]) -> int:
    python = _new_venv(venv)
    pins = ROOT / "constraints" / "lowest.txt"
    if _run([str(python), "-m", "pip", "install", "-e", f"{ROOT}[test]", "-c", str(pins)]) != 0:
        print(f"the lowest versions in {pins} do not install together: raise the bounds or the pins")
        return 1
    versions = _installed(python)
    print("lowest pins installed: " + ", ".join(f"{n} {versions.get(n, '-')}" for n in WINDOW))
    passed = _run([str(python), "-m", "pytest", "-m", "not slow", *pytest_args], cwd=ROOT) == 0
    print("lowest versions: fast tests " + ("PASSED" if passed else "FAILED: raise the lower bounds or fix"))
    return 0 if passed else 1


def record(out: Path) -> int:
    """The running environment's exact versions (pefomed itself left out) as pip constraints."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    lines = sorted((line for line in frozen if line and not line.startswith(("-e ", "pefomed"))), key=str.lower)
    header = [
        "# The exact versions of the last green run of the README's two commands (docs/install.md):",
        "#   pip install -e . -c constraints/tested.txt",
        f"# recorded {datetime.date.today().isoformat()} by `python tools/check_window.py record`, "
        f"Python {platform.python_version()}, {platform.machine()} Linux",
    ]
    out.write_text("\n".join(header + lines) + "\n")
    print(f"{out}: {len(lines)} pins")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["newest", "lowest", "record"])
    parser.add_argument("--keep", type=Path, help="build the virtualenv here and keep it (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "constraints" / "tested.txt", help="record: where to write")
    args = parser.parse_args(argv)
    if args.mode == "record":
        return record(args.out)
    check = newest if args.mode == "newest" else lowest
    if args.keep:
        return check(args.keep, pytest_args)
    with tempfile.TemporaryDirectory(prefix=f"pefomed-{args.mode}-") as scratch:
        return check(Path(scratch) / "venv", pytest_args)


if __name__ == "__main__":
    sys.exit(main())
