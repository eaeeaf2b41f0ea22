"""GRPO in two processes (torchrun, gloo, this CPU): each process rolls out whole groups of its own
questions, and the loss's denominators and the logged statistics are summed over both processes,
so the logged step covers the global batch (world x batch x G answers), not one process's share."""

from __future__ import annotations

import json
import math

import pytest

from test_two_processes import torchrun


@pytest.mark.slow
def test_two_process_grpo_run_counts_the_global_batch(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=8, n_test=2)
    run = tmp_path / "run"
    batch, generations = 2, 3
    proc = torchrun(["train", "tiny-demo", "--data", str(data), "--out", str(run), "train.objective=grpo",
                     "train.max_steps=2", f"train.batch_size={batch}", f"train.grpo.num_generations={generations}",
                     "train.grpo.max_new_tokens=3", "train.log_every=1", "train.seed=4"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "reward_mean" in row]
    assert [row["step"] for row in steps] == [1, 2]  # one row per step: rank 0 writes the log
    for row in steps:
        assert row["answers"] == 2 * batch * generations, row  # both processes' answers, summed
        assert 0 < row["completion_length"] <= 3
        for key in ("loss", "reward_mean", "reward_std", "kl", "clip_fraction", "completion_length"):
            assert math.isfinite(row[key]), (key, row)
        assert 0 <= row["reward_mean"] <= 1
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
