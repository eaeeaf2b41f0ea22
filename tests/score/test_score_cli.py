"""`pefomed score` through the installed console script, as a user runs it."""

import dataclasses
import json
import os
import shutil
import subprocess

import pytest

from pefomed.metrics import vqa
from pefomed.options.score import ScoreOptions

PEFOMED = shutil.which("pefomed")
pytestmark = pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")


def _run(*args, cwd):
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([PEFOMED, "score", *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120)


def _write(path, preds, refs):
    path.write_text("".join(json.dumps({"id": f"q{i}", "images": [f"i{i}.png"], "question": "?", "prediction": p,
                                        "reference": r, "answer_type": "closed", "task": "vqa"}) + "\n"
                            for i, (p, r) in enumerate(zip(preds, refs))))
    return path


def test_compare_without_out_says_nothing_was_written(tmp_path):
    refs = ["yes", "no"] * 10
    a = _write(tmp_path / "a.jsonl", refs, refs)
    b = _write(tmp_path / "b.jsonl", [""] * 3 + refs[3:], refs)
    before = sorted(p.name for p in tmp_path.iterdir())
    res = _run(a, "--compare", b, "--bootstrap", "50", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "nothing written: add --out METRICS.json" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    # the verdict names its test, and B's empty predictions are flagged beside it
    assert "exact McNemar" in res.stderr
    assert "b.jsonl (B): 3 empty predictions" in res.stderr


def test_bad_alpha_is_one_line_and_exit_2(tmp_path):
    a = _write(tmp_path / "a.jsonl", ["yes"], ["yes"])
    res = _run(a, "--alpha", "2", cwd=tmp_path)
    assert res.returncode == 2
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert lines == ["error: --alpha must be in (0, 1), got 2.0"]
    res = _run(a, "--resample-unit", "scan", cwd=tmp_path)
    assert res.returncode == 2 and "--resample-unit must be one of sample, image" in res.stderr


def test_out_writes_metrics_and_report(tmp_path):
    refs = ["yes", "no"] * 5
    a = _write(tmp_path / "a.jsonl", refs, refs)
    res = _run(a, "--out", tmp_path / "M.json", "--bootstrap", "20", "--no-meteor", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"wrote {tmp_path / 'M.json'}" in res.stderr
    metrics = json.loads((tmp_path / "M.json").read_text())
    assert metrics["settings"]["intervals"]["proportions"].startswith("95% Wilson")
    assert (tmp_path / "report" / "report.html").is_file()


def test_every_option_is_declared_once():
    from typer.main import get_command

    from pefomed.cli.app import app

    command = get_command(app).commands["score"]
    flags = {opt for p in command.params for opt in p.opts}
    declared = [f for f in dataclasses.fields(ScoreOptions) if f.metadata["cli"]]
    for f in declared:
        assert ScoreOptions.flag(f.name) in flags, f.name
    # the command has exactly the declared options plus its files, and the declared defaults
    names = {p.name for p in command.params} - {"predictions", "compare", "out", "report", "help"}
    assert names == {f.name for f in declared}
    defaults = {p.name: p.default for p in command.params}
    assert all(defaults[f.name] == f.default for f in declared)
    assert ScoreOptions().uncertain == "negative"  # R2Gen's protocol is the default
    for convention in vqa.CONVENTIONS:  # the scorers' list is the option's
        ScoreOptions(vqa_convention=convention).validate()


def test_library_errors_name_the_option_key(tmp_path):
    from pefomed.errors import UserError
    from pefomed.score.run import score_files

    a = _write(tmp_path / "a.jsonl", ["yes"], ["yes"])
    with pytest.raises(UserError, match=r"`bootstrap` must be >= 0, got -1"):
        score_files([a], bootstrap=-1)
    with pytest.raises(UserError, match=r"`seed` must be a whole number, got '3'"):
        score_files([a], seed="3")
    with pytest.raises(TypeError, match="unknown ScoreOptions key.*: alhpa"):
        score_files([a], alhpa=0.1)
