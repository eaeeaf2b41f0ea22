"""`pefomed demo` through the installed console script, as a new user runs it."""

import json
import shutil
import subprocess

import pytest


@pytest.mark.slow
def test_demo_runs_every_stage_and_says_where_outputs_went(tmp_path):
    exe = shutil.which("pefomed")
    assert exe, "the pefomed console script is not installed"
    out = tmp_path / "demo"
    proc = subprocess.run([exe, "demo", "--out", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rel in ("data/manifest.json", "data/train.jsonl", "data/test.jsonl", "run/adapter/adapter_config.json",
                "run/train_log.jsonl", "pred.jsonl", "metrics.json", "report/report.html"):
        assert (out / rel).is_file(), rel
    metrics = json.loads((out / "metrics.json").read_text())
    overall = metrics["vqa"]["overall"]
    assert overall["n"] == sum(1 for _ in open(out / "data" / "test.jsonl"))
    assert 0.0 <= overall["ci_low"] <= overall["value"] <= overall["ci_high"] <= 1.0
    assert str(out / "metrics.json") in proc.stderr.replace("\n", "")

    # a second demo into the same folder refuses instead of mixing outputs
    again = subprocess.run([exe, "demo", "--out", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
