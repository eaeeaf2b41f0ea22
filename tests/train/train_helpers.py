"""Helpers shared by the training tests (not a test module)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def spot_batch(processor, data_dir: Path, answers: list[str]):
    """A training batch of the bright-spot data set with these answers (and questions of growing
    length, so the batch is padded), and its labels popped out."""
    from pefomed.data.collate import Collator
    from pefomed.recipe import DataSection
    from pefomed.records import Sample

    collator = Collator(processor, DataSection(dir=str(data_dir), max_length=512), data_dir, train=True)
    samples = [Sample(id=f"s{i}", task="vqa", images=[f"images/train_{i:05d}.png"],
                      question="Is there a bright spot " + "in the image " * i + "?", answer=answer,
                      answer_type="open") for i, answer in enumerate(answers)]
    batch = collator([collator.encode(s) for s in samples])
    return batch, batch.pop("labels")


def kill_at_first_checkpoint(argv: list[str], run_dir: Path, timeout_s: float = 300) -> Path:
    """Start `argv` (a `pefomed train` writing `run_dir`), SIGKILL it as soon as its first checkpoint
    exists, and return checkpoints/latest; the run must not have finished (else nothing is shown)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = run_dir / "checkpoints" / "latest"
    deadline = time.time() + timeout_s
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert latest.exists(), proc.stderr.read().decode()[-2000:]
    assert not (run_dir / "adapter").exists(), "the run finished before it could be killed; the test proves nothing"
    return latest
