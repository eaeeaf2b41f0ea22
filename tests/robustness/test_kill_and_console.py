"""The installed `pefomed` console script, in real processes: `prepare` killed with SIGKILL at
several points leaves no DATA_DIR that a later command would read as whole, and a few malformed
inputs end in exit 2 with one error line and no traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fuzzlib
from dataset_fixtures import make_pathvqa, make_vqa_rad_osf, write_image
from pefomed.records import read_split
from robust_checks import check_data_dir, no_staging_left

PEFOMED = shutil.which("pefomed")
pytestmark = pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")


def _folder_source(root: Path, n: int) -> Path:
    for i in range(n):
        image = write_image(root / "train" / f"case{i:04d}.png", f"case{i}", size=(64, 64))
        image.with_suffix(".txt").write_text(f"Report {i}.")
    return root


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 60) -> bool:
    """SIGKILL `proc` as soon as `ready()` is true; False when it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("prepare neither finished nor reached the kill point")


def _staging(out: Path) -> list[Path]:
    return list(out.parent.glob(f".{out.name}.prepare-*"))


KILL_POINTS = {
    "writing images": lambda out: any((s / "images").is_dir() for s in _staging(out)),
    "split files written": lambda out: any((s / "train.jsonl").exists() for s in _staging(out)),
    "manifest written": lambda out: any((s / "manifest.json").exists() for s in _staging(out)),
}


@pytest.mark.parametrize("overwrite", [False, True], ids=["fresh", "overwrite"])
def test_prepare_killed_at_any_point_leaves_old_or_nothing(tmp_path, overwrite):
    src = _folder_source(tmp_path / "src", 150)
    out = tmp_path / "data"
    base = [PEFOMED, "prepare", str(src), "--format", "folder", "--out", str(out), "--split", "1,0,0",
            "--image-size", "32", "--image-format", "jpeg"]
    old_ids = None
    if overwrite:
        old = _folder_source(tmp_path / "old", 3)
        subprocess.run([PEFOMED, "prepare", str(old), "--format", "folder", "--out", str(out), "--split", "1,0,0"],
                       check=True, capture_output=True)
        old_ids = [s.id for s in read_split(out, "train")]
    caught = []
    for point, ready in KILL_POINTS.items():
        proc = subprocess.Popen(base + (["--overwrite"] if overwrite else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if _kill_when(proc, lambda: ready(out)):
            caught.append(point)
        if overwrite:  # the old DATA_DIR, whole (the new one when the run won the race)
            ids = [s.id for s in read_split(out, "train")]
            assert ids == old_ids or len(ids) == 150, point
        elif out.exists():  # only if the run finished before the kill point
            assert check_data_dir(out, point) == 150
            shutil.rmtree(out)
    print(f"killed at: {caught}")
    assert caught, "no kill point was reached before prepare finished"
    # the next run cleans the dead runs' staging folders and writes a whole DATA_DIR
    done = subprocess.run(base + ["--overwrite"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert check_data_dir(out, "after the kills") == 150
    no_staging_left(out)


CASES = {
    "truncated JSON": lambda tmp: _vqa_rad(tmp, lambda p: p.write_bytes(p.read_bytes()[:-30])),
    "lone surrogate": lambda tmp: _vqa_rad(tmp, lambda p: p.write_text(p.read_text().replace('"Lung"', '"\\udc80"'))),
    "deep nesting": lambda tmp: _vqa_rad(tmp, lambda p: p.write_text("[" * 10_000 + "]" * 10_000)),
    "pickle bomb": lambda tmp: _pathvqa(tmp, fuzzlib.shared_list_bomb()),
    "pickle callable": lambda tmp: _pathvqa(tmp, __import__("pickle").dumps(
        [fuzzlib.Calls(os.system, f"touch {tmp / 'ran'}")])),
}


def _vqa_rad(tmp: Path, mutate) -> list[str]:
    src = make_vqa_rad_osf(tmp / "src")
    mutate(src / "VQA_RAD Dataset Public.json")
    return ["prepare", str(src), "--format", "vqa-rad", "--out", str(tmp / "out")]


def _pathvqa(tmp: Path, payload: bytes) -> list[str]:
    src = make_pathvqa(tmp / "src")
    (src / "split" / "qas" / "train" / "train_qa.pkl").write_bytes(payload)
    return ["prepare", str(src), "--format", "pathvqa", "--out", str(tmp / "out")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_console_script_reports_one_error(tmp_path, case):
    args = CASES[case](tmp_path)
    proc = subprocess.run([PEFOMED, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert sum(line.startswith("error:") for line in proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "ran").exists()


def test_console_script_split_name_and_score_input(tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_bytes(b'{"id": "a", "prediction": "yes", "reference": "\\ud800"}\n')
    proc = subprocess.run([PEFOMED, "score", str(pred), "--out", str(tmp_path / "m.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"{pred}:1: reference holds a lone surrogate" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "m.json").exists()
    code = ("import sys; from pefomed.records import read_split; from pefomed.errors import UserError\n"
            "try: read_split(sys.argv[1], '../x')\nexcept UserError as e: print(e); sys.exit(2)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "'../x' is not a plain split name" in proc.stdout
