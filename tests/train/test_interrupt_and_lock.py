"""Ctrl-C during `pefomed train` says what was kept and exits 130; a second `pefomed train` on a
RUN_DIR that is being written refuses (a lock) instead of interleaving its writes. Both through
the installed console script, as a user (or SLURM) would run them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest


def pefomed(*args):
    exe = shutil.which("pefomed")
    return [exe, *args] if exe else [sys.executable, "-m", "pefomed.cli.app", *args]


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_a_second_train_is_refused(demo_data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(pefomed("train", "tiny-demo", "--data", str(demo_data), "--out", str(run),
                                     "train.max_steps=2000", "train.save_every=2", "train.batch_size=2"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 240
        while not (run / "checkpoints" / "latest").exists():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "training never saved its first checkpoint"
            time.sleep(0.2)
        second = subprocess.run(pefomed("train", "--resume", str(run)), capture_output=True, text=True,
                                timeout=240, env=env)
        assert second.returncode == 2, second
        assert "another `pefomed train` is writing this run" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, err
    assert "interrupted at step" in err and f"--resume {run}" in err
    assert "Traceback" not in err
    assert (run / "checkpoints" / "latest").exists()
