"""pefomed.io.atomic_folder is the one whole-folder writer (DATA_DIR, export, RUN_DIR/adapter):
it names its staging folder after the writer and its process, clears only what killed writers of
the same folder left, publishes with the user's modes, and `pefomed prepare --overwrite` killed at
every step of its swap (PEFOMED_FAULT_AT) leaves a whole DATA_DIR, old or new, that the next
prepare puts back and replaces. tests/robustness/test_kill_folder_swap.py kills the swap itself."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pefomed.io import FAULT_ENV, atomic_folder, folder_in_place

PEFOMED = shutil.which("pefomed")


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped): what a kill -9'd writer leaves."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _staging_left(final: Path, writer: str) -> list[str]:
    return sorted(p.name for p in final.parent.glob(f".{final.name}.{writer}-*") if p.is_dir())


@pytest.mark.parametrize("sole_writer", [True, False], ids=["sole-writer", "shared"])
def test_only_what_killed_writers_of_this_folder_left_is_cleared(tmp_path, sole_writer):
    final = tmp_path / "data"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".data.prepare-{_dead_pid()}-k1ll3d00"
        live = tmp_path / f".data.prepare-{running.pid}-w0rk1ng0"  # a writer still at work
        neighbours = [tmp_path / f".data-v2.prepare-{_dead_pid()}-abcdefgh",  # another folder's
                      tmp_path / f".data.export-{_dead_pid()}-abcdefgh"]  # another writer's (own sweep)
        for folder in (dead, live, *neighbours):
            folder.mkdir()
            (folder / "half.bin").write_bytes(b"half")
        lock = tmp_path / ".data.prepare-lock"  # a file, never a staging folder
        lock.write_text("")
        with atomic_folder(final, writer="prepare", sole_writer=sole_writer) as staging:
            assert staging.parent == tmp_path and staging.name.startswith(f".data.prepare-{os.getpid()}-")
            (staging / "manifest.json").write_text("{}")
        assert (final / "manifest.json").read_text() == "{}"
        # as sole writer (under the caller's lock) nothing else can be writing: every staging folder
        # of this writer and folder goes; without a lock only those whose process is gone
        assert _staging_left(final, "prepare") == ([] if sole_writer else [live.name])
        assert all(n.is_dir() for n in neighbours) and lock.is_file()
    finally:
        running.kill()
        running.wait()


def test_a_failed_write_leaves_the_old_folder_and_no_staging(tmp_path):
    final = tmp_path / "out"
    with atomic_folder(final, writer="export") as staging:
        (staging / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(final, writer="export") as staging:
        (staging / "a.txt").write_text("new, half")
        raise RuntimeError("stopped midway")
    assert (final / "a.txt").read_text() == "old" and _staging_left(final, "export") == []


def test_the_published_folder_has_the_users_modes_not_a_private_temp_folders(tmp_path):
    """mkdtemp makes 0700 folders; a DATA_DIR or export must be readable like any folder the user made."""
    made = tmp_path / "made"
    made.mkdir()
    with atomic_folder(tmp_path / "out", writer="prepare", sole_writer=False) as staging:
        (staging / "a.txt").write_text("a")
    assert (tmp_path / "out").stat().st_mode & 0o777 == made.stat().st_mode & 0o777


def _folder_source(root: Path, n: int, tag: str) -> Path:
    from PIL import Image

    (root / "train").mkdir(parents=True)
    for i in range(n):
        image = root / "train" / f"{tag}{i:03d}.png"
        Image.new("RGB", (16, 16), (i * 40, 7, 99 if tag == "new" else 11)).save(image)
        image.with_suffix(".txt").write_text(f"{tag} report {i}.")
    return root


def _prepare(src: Path, out: Path, fault: int | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    if fault is not None:
        env[FAULT_ENV] = str(fault)
    return subprocess.run([PEFOMED, "prepare", str(src), "--format", "folder", "--out", str(out), "--split", "1,0,0",
                           "--overwrite"], env=env, capture_output=True, text=True, timeout=120)


def _ids(data_dir: Path) -> list[str]:
    from pefomed.records import read_split

    return sorted(s.id for s in read_split(data_dir, "train"))  # sha256 of the split checked on read


@pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")
def test_prepare_overwrite_killed_at_every_step_of_its_swap_keeps_a_whole_data_dir(tmp_path):
    old_src, new_src = _folder_source(tmp_path / "old", 2, "old"), _folder_source(tmp_path / "new", 3, "new")
    out = tmp_path / "data"
    assert _prepare(old_src, out, None).returncode == 0
    old_ids = _ids(out)
    killed_at = []
    for index in range(1, 20):
        result = _prepare(new_src, out, index)
        if result.returncode == 0:  # fewer file operations than `index`: the swap ran to its end
            break
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        killed_at.append(result.stderr.strip().split("killed before ")[-1])
        # right after the kill: the old DATA_DIR or the new one, whole, where readers look
        assert len(_ids(folder_in_place(out))) == 3 or _ids(folder_in_place(out)) == old_ids, killed_at[-1]
        # the next prepare finishes or undoes the swap (the old DATA_DIR back in place), then replaces it
        redo = _prepare(old_src, out, None)
        assert redo.returncode == 0, redo.stderr[-2000:]
        assert _ids(out) == old_ids
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "new", "old"], killed_at[-1]
    else:
        raise AssertionError("prepare's swap never ran to its end")
    assert killed_at == ["syncing the new folder", "moving the old folder aside", "renaming the new folder into place",
                         "syncing the parent folder", "deleting the old folder"]
    assert len(_ids(out)) == 3
    # a DATA_DIR is readable like any folder the user made (it was mkdtemp's private 0700 before)
    assert out.stat().st_mode & 0o777 == (tmp_path / "new").stat().st_mode & 0o777
