"""Usage errors through the installed console script, the way a user types them: one line, exit 2.

typer 0.29 vendors click as `typer._click`, whose exceptions are not click's; these tests run
the real `pefomed` entry point in a subprocess so a change in the CLI stack cannot hide a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

PEFOMED = shutil.which("pefomed")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [PEFOMED, *args] if PEFOMED else [sys.executable, "-m", "pefomed.cli.app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("args, says", [
    (("infer", "runs/x", "--bogus"), "No such option: --bogus"),  # typer 0.24's vendored click: '--bogus'
    (("infer",), "Missing argument"),
    (("nosuchcmd",), "No such command 'nosuchcmd'"),
    (("score", "p.jsonl", "--alpha", "abc"), "'--alpha'"),
    (("train", "--bogus-flag"), "No such option: --bogus-flag"),
    (("prepare", "src", "--format"), "--format"),
    (("export",), "Missing argument"),
])
def test_usage_error_is_one_line_and_exit_2(args, says, tmp_path):
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    # the wording moved between typer releases inside the window ("No such option: --x" / "No such option '--x'")
    assert lines[0].startswith("error:") and says in lines[0].replace("option '", "option: ").replace("'.", "."), lines
    assert "--help" in lines[0]  # says where to look


def test_help_exits_0_and_bare_command_shows_help(tmp_path):
    assert run("--help", cwd=tmp_path).returncode == 0
    bare = run(cwd=tmp_path)
    assert bare.returncode == 2 and "Usage" in bare.stdout + bare.stderr and "Traceback" not in bare.stderr


def test_user_error_is_one_line_and_exit_2(tmp_path):
    result = run("infer", str(tmp_path / "missing-run"), "--data", str(tmp_path), "--out", "p.jsonl", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error:")
