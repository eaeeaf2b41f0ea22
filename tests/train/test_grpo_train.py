"""train.objective=grpo through the installed CLI: a short run trains, logs the GRPO columns, and
its RUN_DIR infers like any other (the run contract is unchanged)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

PEFOMED = str(Path(sys.executable).with_name("pefomed"))


def test_grpo_run_trains_logs_and_infers(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=4, n_test=2)
    run = tmp_path / "run"
    trained = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(run),
                              "train.objective=grpo", "train.max_steps=2", "train.batch_size=2",
                              "train.grpo.num_generations=2", "train.grpo.max_new_tokens=3", "train.log_every=1"],
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    steps = [row for row in rows if "reward_mean" in row]
    assert [row["step"] for row in steps] == [1, 2]
    for row in steps:
        for key in ("reward_mean", "reward_std", "kl", "clip_fraction", "completion_length", "rollout_share"):
            assert math.isfinite(row[key]), (key, row)
        assert 0 <= row["reward_mean"] <= 1 and 0 < row["rollout_share"] < 1
        assert 0 < row["completion_length"] <= 3
    pred = tmp_path / "pred.jsonl"
    inferred = subprocess.run([PEFOMED, "infer", str(run), "--data", str(data), "--out", str(pred)],
                              capture_output=True, text=True, timeout=600)
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    assert len(pred.read_text().splitlines()) == 2


def test_grpo_refuses_what_it_cannot_do(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=2, n_test=1)
    refused = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "run"),
                              "train.objective=grpo", "train.feature_cache=true"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr
    assert "train.feature_cache" in refused.stderr and "Traceback" not in refused.stderr
