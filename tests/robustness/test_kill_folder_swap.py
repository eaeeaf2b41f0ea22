"""kill -9 at every file operation of pefomed.io's one folder swap (RUN_DIR/adapter, DATA_DIR,
export), through its PEFOMED_FAULT_AT test hook: at every index some whole folder, old or new, is
findable, and the next writer finishes the job; and `pefomed train` killed between its final
checkpoint and the adapter's rename finishes with `--resume`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pefomed.io import FAULT_ENV, folder_in_place

PEFOMED = shutil.which("pefomed")

# Writes FINAL (argv[1]) whole through atomic_folder with the files named by argv[2:] ("name=text").
WRITER = """
import sys
from pathlib import Path
from pefomed.io import atomic_folder
with atomic_folder(Path(sys.argv[1])) as tmp:
    for item in sys.argv[2:]:
        name, text = item.split("=", 1)
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_text(text)
"""

OLD = {"a.txt": "old a", "b.txt": "old b"}
NEW = {"a.txt": "new a", "sub/c.txt": "new c", "weights.bin": "new" * 1000}


def _write(final: Path, files: dict, fault: int | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(FAULT_ENV, None)
    if fault is not None:
        env[FAULT_ENV] = str(fault)
    return subprocess.run([sys.executable, "-c", WRITER, str(final), *(f"{k}={v}" for k, v in files.items())],
                          env=env, capture_output=True, text=True, timeout=60)


def _contents(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("replacing", [False, True], ids=["fresh", "replacing"])
def test_kill_at_every_operation_leaves_a_whole_folder(tmp_path, replacing):
    killed_at = []
    for index in range(1, 50):
        final = tmp_path / f"run{index}" / "adapter"
        if replacing:
            assert _write(final, OLD, None).returncode == 0
        result = _write(final, NEW, index)
        if result.returncode == 0:  # the swap has fewer operations than `index`: it ran to the end
            assert _contents(final) == NEW
            break
        assert result.returncode == -signal.SIGKILL, result.stderr
        killed_at.append(result.stderr.strip().split("killed before ")[-1])
        # what a reader sees right after the kill: the old folder or the new one, each whole
        seen = folder_in_place(final)
        if seen.exists():
            assert _contents(seen) in ([OLD, NEW] if replacing else [NEW]), (index, killed_at[-1])
        else:
            assert not replacing, f"no whole folder after a kill before {killed_at[-1]}"
        # the next writer recovers what the kill left and publishes its own folder, leaving no hidden sibling
        assert _write(final, NEW, None).returncode == 0
        assert _contents(final) == NEW
        assert sorted(p.name for p in final.parent.iterdir()) == ["adapter"], index
    else:
        raise AssertionError("the swap never ran to its end")
    expected = ["syncing the new folder", "renaming the new folder into place", "syncing the parent folder"]
    if replacing:
        expected[1:1] = ["moving the old folder aside"]
        expected.append("deleting the old folder")
    assert killed_at == expected


@pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")
def test_train_killed_before_the_adapter_rename_finishes_with_resume(tmp_path, demo_data):
    """The run's final checkpoint is written, its adapter is not: `--resume` saves it from that
    checkpoint (before: 'nothing to resume' with no adapter/, and the run could never be used)."""
    run = tmp_path / "run"
    cmd = [PEFOMED, "train", "tiny-demo", "train.max_steps=2", "train.batch_size=4",
           "--data", str(demo_data), "--out", str(run)]
    env = {**os.environ, FAULT_ENV: "2"}  # operation 2 of the final save: the rename of the new adapter
    killed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "killed before renaming the new folder into place" in killed.stderr
    assert (run / "checkpoints" / "latest").is_file() and not (run / "adapter").exists()

    env.pop(FAULT_ENV)
    resumed = subprocess.run([PEFOMED, "train", "--resume", str(run)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "weights were not saved" in resumed.stdout + resumed.stderr
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert not list(run.glob(".adapter*"))  # the killed save's temporary folder is gone
    from pefomed.models.run_dir import open_run

    assert open_run(run).weights.folder == run / "adapter"
