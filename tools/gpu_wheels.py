"""Build the wheel folder that benchmarks/gpu_check.py installs on the lent GPU machine.

That machine reaches no package index: whatever pefomed needs beyond its image travels with the
working tree, as wheels in an ignored folder named in the device tool's `carry` (at most 64 MiB
for the tree and the carried paths together). This script fills that folder, here, where pip works:

    python tools/gpu_wheels.py --out wheels/gpu

- pefomed: `pip wheel --no-deps` of the checkout (a copy of its tracked and untracked-not-ignored
  files, so no build output lands in the checkout); gpu_check installs the checkout itself with
  `pip install -e .` and falls back to this wheel.
- deepspeed: on PyPI as a source distribution only, so it is built here (`pip wheel --no-deps
  --no-build-isolation`: pure Python; DS_BUILD_OPS unset, so no CUDA op is compiled: pefomed's
  ZeRO-2/3 steps a torch AdamW and needs none).
- the rest: `pip download --no-deps --only-binary=:all:` for the machine's platform (x86-64
  manylinux) and Python (3.12: the image's python3 is 3.12.3 per the device tool's KINDS.md).

What is carried: the distributions pefomed (base install, plus bitsandbytes for QLoRA) needs that
the GPU image does not have (its package list, KINDS.md, read 2026-11-17), and a few it has in a
version nobody has read there (GUARDS): gpu_check installs a carried wheel only when its
distribution is absent there or outside what pefomed and the carried wheels require. Versions are
those of the last green run (constraints/tested.txt). Not carried: kernels (pefomed declares it
for transformers >= 5.2x; the image's transformers 5.17 does not use it) and pyarrow (datasets
needs it; the image has it, and its wheel alone is ~40 MB).

Prints each wheel, the total and the size of the tree that travels with it; refuses (exit 1)
when the two together pass 64 MiB.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT = 64 * 2**20  # the device tool's limit on the working tree plus carried paths, per call
# absent from the GPU image: deepspeed + its hjson and pydantic (with pydantic's own needs),
# bitsandbytes (QLoRA), pydicom, nibabel, liger-kernel, and datasets + evaluate (pefomed.score.evaluate_modules) with theirs
MISSING = ["deepspeed", "hjson", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
           "bitsandbytes", "pydicom", "datasets", "evaluate", "dill", "multiprocess", "nibabel",
           "liger-kernel"]  # nibabel: NIfTI volumes (a base dependency); liger-kernel: train.loss_kernel=liger
# on the image in versions not read there: pefomed's window is peft >= 0.18, typer >= 0.24,
# pydantic-core wants typing-extensions >= 4.16
GUARDS = ["peft", "typer", "typing-extensions"]
BUILT = {"deepspeed"}  # source distribution only: built here
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    """name -> version from constraints/tested.txt (the last green run's exact versions)."""
    found = {}
    for line in (REPO / "constraints" / "tested.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[_canon(name)] = version.strip()
    return found


def _pin(name: str, tested: dict[str, str]) -> str:
    if _canon(name) in tested:
        return f"{name}=={tested[_canon(name)]}"
    from importlib import metadata

    try:  # not in the last green run's list: the version this environment runs
        return f"{name}=={metadata.version(name)}"
    except metadata.PackageNotFoundError:
        raise SystemExit(f"{name}: no version in constraints/tested.txt and not installed here; pin it first")


def travelling_tree_bytes() -> int:
    """Bytes of what the device tool sends besides carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((REPO / name).stat().st_size for name in listed if name and (REPO / name).is_file())


def _pip(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def build_pefomed(out: Path) -> None:
    """A wheel of the checkout, built from a copy: setuptools writes build/ and *.egg-info where it builds."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    with tempfile.TemporaryDirectory(prefix="pefomed-src-") as tmp:
        for name in listed:
            source = REPO / name
            if name and source.is_file():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, Path(tmp) / name)
        _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), tmp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "wheels" / "gpu")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (KINDS.md: 3.12.3)")
    parser.add_argument("--skip", nargs="*", default=[], help="distributions to leave out (e.g. bitsandbytes)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    old = sorted(out.glob("*.whl"))
    if old:  # two versions of one distribution would stop the whole install there
        print(f"removing {len(old)} wheel(s) of an earlier run from {out}")
        for wheel in old:
            wheel.unlink()
    tested = pins()
    skip = {_canon(name) for name in args.skip}
    wanted = [name for name in MISSING + GUARDS if _canon(name) not in skip]

    build_pefomed(out)
    for name in wanted:
        if name in BUILT:
            env = {key: value for key, value in os.environ.items() if not key.startswith("DS_BUILD")}
            _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), _pin(name, tested), env=env)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    downloads = [_pin(name, tested) for name in wanted if name not in BUILT]
    _pip("download", "--no-deps", "--only-binary=:all:", "-q", *platform_args, "--python-version", args.python_version,
         "--implementation", "cp", "-d", str(out), *downloads)

    wheels = sorted(out.glob("*.whl"))
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:8.2f} MiB  {wheel.name}")
    total = sum(w.stat().st_size for w in wheels)
    tree = travelling_tree_bytes()
    print(f"wheels: {len(wheels)}, {total / 2**20:.2f} MiB; the working tree that travels with them: "
          f"{tree / 2**20:.2f} MiB; together {(total + tree) / 2**20:.2f} MiB of the {LIMIT / 2**20:.0f} MiB a call carries")
    if total + tree > LIMIT:
        print(f"refusing: {out} would not travel (over {LIMIT / 2**20:.0f} MiB with the tree); leave something out "
              f"with --skip (bitsandbytes is the largest) or shrink the tree", file=sys.stderr)
        return 1
    try:
        shown = out.relative_to(REPO)
    except ValueError:
        shown = out
    print(f"carry [\"{shown}\"] and run: python benchmarks/gpu_check.py --out $OUT/gpu --wheels {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
