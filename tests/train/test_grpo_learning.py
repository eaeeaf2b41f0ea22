"""GRPO learns: on the built-in synthetic presence task (a bright spot: yes/no), a short SFT stage
leaves the tiny model answering one word for every image (test accuracy 0.5); 30 GRPO steps from
it (train.init_from: SFT -> GRPO) raise the mean reward of the rollouts and the greedy test
accuracy by margins far above what sampling noise gives, with fixed seeds. Measured when written:
reward 0.39 at step 1 -> 0.95-1.0 from step 21; test accuracy 0.5 -> 1.0 (60 steps)."""

from __future__ import annotations

import json
from pathlib import Path

from pefomed.cli.app import main


def _accuracy(pred: Path) -> float:
    rows = [json.loads(line) for line in pred.read_text().splitlines()]
    return sum(r["prediction"].strip().lower() == r["reference"] for r in rows) / len(rows)


def test_grpo_raises_reward_and_accuracy_over_its_start(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "spot", n_train=128, n_test=64, seed=1)
    sft, grpo = tmp_path / "sft", tmp_path / "grpo"
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(sft), "train.max_steps=20",
                 "train.batch_size=16", "train.lr=5e-3", "train.warmup_steps=0", "train.save_every=1000"]) == 0
    assert main(["infer", str(sft), "--data", str(data), "--out", str(tmp_path / "sft.jsonl")]) == 0
    start = _accuracy(tmp_path / "sft.jsonl")

    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(grpo), "train.objective=grpo",
                 f"train.init_from={sft}", "train.max_steps=30", "train.warmup_steps=0", "train.save_every=1000",
                 "train.grpo.beta=0", "train.lr=2e-3", "train.grpo.num_generations=8", "train.batch_size=8",
                 "train.grpo.max_new_tokens=2", "train.log_every=1"]) == 0
    assert main(["infer", str(grpo), "--data", str(data), "--out", str(tmp_path / "grpo.jsonl")]) == 0
    end = _accuracy(tmp_path / "grpo.jsonl")

    rewards = [json.loads(line)["reward_mean"] for line in (grpo / "train_log.jsonl").read_text().splitlines()]
    assert len(rewards) == 30
    first, last = sum(rewards[:3]) / 3, sum(rewards[-5:]) / 5
    assert last >= first + 0.3, (first, last, rewards)
    assert end >= start + 0.25, (start, end)
