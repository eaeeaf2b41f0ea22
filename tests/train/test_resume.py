"""A run killed mid-way (SIGKILL, a real process) and resumed ends with the same adapter
weights as an uninterrupted run: same data order, schedule, optimizer state and RNG (dropout)."""

import shutil

import pytest
from safetensors.torch import load_file

from pefomed.cli.app import main
from train_helpers import kill_at_first_checkpoint

RECIPE = ["train.max_steps=10", "train.save_every=2", "train.batch_size=4", "method.dropout=0.1",
          "train.lr=3e-3", "train.warmup_steps=2", "train.seed=3"]


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=48, n_test=4)
    straight = tmp_path / "straight"
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(straight), *RECIPE]) == 0

    killed = tmp_path / "killed"
    latest = kill_at_first_checkpoint([shutil.which("pefomed"), "train", "tiny-demo", "--data", str(data), "--out",
                                       str(killed), *RECIPE], killed)
    interrupted_at = latest.read_text()

    assert main(["train", "--resume", str(killed)]) == 0
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(killed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    for key in a:
        assert (a[key] == b[key]).all(), f"{key} differs after resuming from {interrupted_at}"
    steps = [line for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert len(steps) == 10, "the log holds each step once, whatever was logged before the kill"


def test_resume_needs_a_checkpoint(tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text("model:\n  kind: tiny\n")
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
