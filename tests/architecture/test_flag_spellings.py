"""Library code names option keys, never pefomed's command-line flags (pefomed.errors): only cli/
spells a flag, from the declarations in pefomed/options. The string literals of pefomed/ (docstrings
aside) that still hold a `--flag` are other programs' arguments, listed here one by one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"--[a-z][a-z0-9_-]+")
# (file, flag): flags of other programs that pefomed runs or tells the user to run
OTHER_PROGRAMS = {
    ("pefomed/score/provenance.py", "--show-toplevel"),  # git rev-parse
    ("pefomed/score/provenance.py", "--porcelain"),  # git status
    ("pefomed/score/provenance.py", "--untracked-files"),  # git status
    ("pefomed/infer/shards.py", "--nproc_per_node"),  # torchrun, to resume a data-parallel run
    ("pefomed/score/report_models.py", "--cache-dir"),  # huggingface-cli download, to fetch weights
}


def _literal_flags() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted((ROOT / "pefomed").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                for flag in FLAG.findall(node.value):
                    found.append((str(path.relative_to(ROOT)), node.lineno, flag))
    return found


def test_library_string_literals_spell_no_pefomed_flag():
    found = _literal_flags()
    ours = [(f, line, flag) for f, line, flag in found if (f, flag.split("=")[0]) not in OTHER_PROGRAMS]
    assert not ours, "name the key in backticks (`num_beams`) or use pefomed.options.command_line / flag_of:\n" + \
        "\n".join(f"{f}:{line}: {flag}" for f, line, flag in ours)
    assert len(found) <= 10  # the issue's bound, other programs' flags included


def test_the_check_finds_a_flag():
    """The scan itself works: a flag in a message literal is found (so the test above can fail)."""
    tree = ast.parse('raise UserError("pass --skip-bad to skip it")')
    consts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert FLAG.findall(consts[0]) == ["--skip-bad"]
