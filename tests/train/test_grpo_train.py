"""train.objective=grpo through the installed CLI: a short run trains, logs the GRPO columns, and
its RUN_DIR infers like any other (the run contract is unchanged)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from train_helpers import kill_at_first_checkpoint

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
    refused = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "run"),
                              "train.objective=grpo", "train.loss_kernel=liger"],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr
    assert "train.loss_kernel" in refused.stderr and "Traceback" not in refused.stderr


GRPO_RESUME = ["train.objective=grpo", "train.max_steps=6", "train.save_every=2", "train.batch_size=2",
               "train.grpo.num_generations=2", "train.grpo.max_new_tokens=3", "train.grpo.temperature=1.5",
               "method.dropout=0.1", "train.lr=3e-3", "train.seed=5"]


def test_killed_and_resumed_grpo_run_equals_uninterrupted(tmp_path):
    """The rollouts' sampling is seeded per (seed, micro-batch, rank): a run killed (SIGKILL) after a
    checkpoint and resumed samples the same answers and ends with the same adapter, bit for bit."""
    from safetensors.torch import load_file

    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=32, n_test=1, seed=1)
    # SFT -> GRPO: a short SFT stage answers yes/no about half right, so the groups' rewards differ
    # (from the untrained model every reward is 0, every advantage 0, and nothing would move)
    sft = tmp_path / "sft"
    stage = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(sft),
                            "train.max_steps=20", "train.batch_size=16", "train.lr=5e-3", "train.warmup_steps=0",
                            "train.save_every=1000"], capture_output=True, text=True, timeout=600)
    assert stage.returncode == 0, stage.stderr[-3000:]
    recipe = [*GRPO_RESUME, f"train.init_from={sft}"]
    straight = tmp_path / "straight"
    done = subprocess.run([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(straight), *recipe],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    kill_at_first_checkpoint([PEFOMED, "train", "tiny-demo", "--data", str(data), "--out", str(killed), *recipe], killed)
    resumed = subprocess.run([PEFOMED, "train", "--resume", str(killed)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_file(straight / "adapter" / "adapter_model.safetensors")
    b = load_file(killed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    # LoRA's B starts at zero: a nonzero B shows the rollouts' rewards really moved the adapter
    assert any(bool(t.abs().sum() > 0) for k, t in a.items() if "lora_B" in k), "GRPO never updated the adapter"
    for key in a:
        assert (a[key] == b[key]).all(), key
    rewards = [json.loads(line).get("reward_mean") for line in (killed / "train_log.jsonl").read_text().splitlines()]
    straight_rewards = [json.loads(line).get("reward_mean")
                        for line in (straight / "train_log.jsonl").read_text().splitlines()]
    assert rewards == straight_rewards and len(rewards) == 6
