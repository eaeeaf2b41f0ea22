"""The stages' own messages name option keys (`split`, `task`): through the CLI each reads as the
flag of the command the user typed, from Python as the key; advice to run another command is that
command's line, spelled from its declaration, under any command."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pefomed.errors import UserError

PEFOMED = shutil.which("pefomed")
needs_cli = pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")


def _run(*args, cwd):
    return subprocess.run([PEFOMED, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "PEFOMED_DEBUG": "0"})


def _annotations(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "all.jsonl"
    path.write_text('{"question": "Is there a mass?", "answer": "no", "image": "a.png"}\n')
    return path


@needs_cli
@pytest.mark.parametrize("args, flags", [
    (["--split", "1,2"], "--split: expected three"),
    (["--images", "nowhere"], "--images is not a folder"),
    (["--map", "a b=c"], "--map: field names must be plain words"),
])
def test_prepare_reader_messages_name_prepare_flags(tmp_path, args, flags):
    source = _annotations(tmp_path / "src")
    result = _run("prepare", source, "--format", "jsonl", "--out", tmp_path / "data", *args, cwd=tmp_path)
    assert result.returncode == 2 and flags in result.stderr, result.stderr
    assert "`" not in result.stderr and "Traceback" not in result.stderr


@needs_cli
def test_score_messages_name_score_flags(tmp_path):
    pred = tmp_path / "P.jsonl"
    pred.write_text('{"id": "r1", "images": [], "question": "", "prediction": "no effusion", '
                    '"reference": "no effusion.", "task": "report"}\n')
    fast = ["--no-meteor", "--no-clinical", "--bootstrap", "0"]
    wrong_task = _run("score", pred, "--task", "vqa", *fast, cwd=tmp_path)
    assert wrong_task.returncode == 2, wrong_task.stderr
    assert "but --task vqa" in wrong_task.stderr and "score it with --task report, or leave --task out" in wrong_task.stderr
    no_model = _run("score", pred, "--judge-url", "http://127.0.0.1:9", *fast, cwd=tmp_path)
    assert no_model.returncode == 2 and "--judge-url needs --judge-model" in no_model.stderr, no_model.stderr
    for result in (wrong_task, no_model):
        assert "`" not in result.stderr.partition("error:")[2] and "Traceback" not in result.stderr


@needs_cli
def test_advice_to_run_train_keeps_trains_flag_under_export(tmp_path):
    result = _run("export", tmp_path, "--out", tmp_path / "exported", cwd=tmp_path)
    # export has an --out of its own: the advice is still train's command line, not export's flag
    assert result.returncode == 2, result.stderr
    assert "pass the RUN_DIR written by `pefomed train --out RUN_DIR`" in result.stderr, result.stderr


def test_from_python_the_messages_name_keys(tmp_path):
    from pefomed.data.formats import PrepareOptions
    from pefomed.data.formats._common import parse_fractions
    from pefomed.data.formats.slake import read_slake
    from pefomed.models.run_dir import open_run

    with pytest.raises(UserError) as split:
        parse_fractions("1,2")
    assert str(split.value).startswith("`split`: expected three")
    with pytest.raises(UserError) as language:
        read_slake(tmp_path, PrepareOptions(language="xx"))
    assert str(language.value).startswith("`language` must be one of en, zh, all")
    with pytest.raises(UserError) as not_a_run:
        open_run(tmp_path)
    assert str(not_a_run.value).endswith("pass the RUN_DIR written by `pefomed train --out RUN_DIR`")
    for caught in (split, language, not_a_run):
        assert " --split" not in str(caught.value) and "--language" not in str(caught.value)
