"""`pefomed export` and `pefomed score` killed with SIGKILL at several points: no later command
ever finds a half-written output that looks whole (an export folder is complete or absent,
METRICS.json parses whole or is absent), and the same command run again succeeds."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PEFOMED = shutil.which("pefomed")


def pefomed(*args) -> list[str]:
    return [PEFOMED, *map(str, args)] if PEFOMED else [sys.executable, "-m", "pefomed.cli.app", *map(str, args)]


def killed_after(args: list[str], seconds: float) -> bool:
    """Run `pefomed args`, SIGKILL it after `seconds`; False when it finished first."""
    proc = subprocess.Popen(pefomed(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


@pytest.mark.slow
def test_export_killed_leaves_a_whole_folder_or_none(tiny_run, tmp_path):
    out = tmp_path / "exported"
    kills = 0
    for delay in (1.0, 2.5, 4.0, 6.0):
        if killed_after(["export", tiny_run, "--merge", "--out", out], delay):
            kills += 1
            # complete or absent: a folder only ever appears by renaming a finished one into place
            assert not out.exists() or (out / "pefomed_export.json").is_file()
        if out.exists():
            break
    assert kills >= 1, "export always finished before the first kill: nothing was tested"
    if not out.exists():
        assert subprocess.run(pefomed("export", tiny_run, "--merge", "--out", out)).returncode == 0
    info = json.loads((out / "pefomed_export.json").read_text())
    assert info["merged"] is True and (out / "config.json").is_file()


@pytest.mark.slow
def test_export_removes_what_a_killed_export_left_and_refuses_a_concurrent_one(tiny_run, tmp_path):
    import fcntl

    out = tmp_path / "exported"
    # what kill -9 during an export leaves: pefomed.io.atomic_folder's hidden sibling, half full; a
    # pid still running (ours): under the export lock nobody else can be writing it, so it goes anyway
    abandoned = tmp_path / f".exported.export-{os.getpid()}-k1ll3d00"
    abandoned.mkdir()
    (abandoned / "model.safetensors").write_bytes(b"half")
    other = tmp_path / ".exported-v2.export-1-abcdefgh"  # another --out's folder: not ours to remove
    other.mkdir()
    with open(tmp_path / ".exported.export-lock", "a+") as held:  # an export to the same --out is running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = subprocess.run(pefomed("export", tiny_run, "--out", out), capture_output=True, text=True)
    assert busy.returncode == 2 and "another `pefomed export` is writing this folder" in busy.stderr, busy.stderr
    assert abandoned.exists() and not out.exists()
    done = subprocess.run(pefomed("export", tiny_run, "--out", out), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not abandoned.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".exported-v2.export-1-abcdefgh", "exported"]


@pytest.mark.slow
def test_score_killed_leaves_whole_metrics_or_none(tmp_path):
    rng = random.Random(0)
    words = "the heart size is normal lungs are clear no effusion small left pleural opacity stable".split()
    pred = tmp_path / "pred.jsonl"
    with open(pred, "w") as handle:
        for i in range(1500):
            ref = " ".join(rng.choices(words, k=12)) + "."
            hyp = " ".join(rng.choices(words, k=10)) + "."
            handle.write(json.dumps({"id": f"r{i}", "images": [f"{i}.png"], "question": "Describe.",
                                     "prediction": hyp, "reference": ref, "task": "report"}) + "\n")
    out = tmp_path / "metrics.json"
    args = ["score", pred, "--out", out, "--no-meteor", "--bootstrap", "2000"]
    kills = 0
    for delay in (0.5, 1.5, 3.0, 5.0):
        if killed_after(args, delay):
            kills += 1
            if out.exists():
                json.loads(out.read_text())  # never a torn file
        else:
            break
    assert kills >= 1, "score always finished before the first kill: nothing was tested"
    assert subprocess.run(pefomed(*args), stdout=subprocess.DEVNULL).returncode == 0
    metrics = json.loads(out.read_text())
    assert metrics["report"]["BLEU-4"]["n"] == 1500
    assert not list(Path(tmp_path).glob("*.tmp*")), "a temporary file was left beside METRICS.json"
