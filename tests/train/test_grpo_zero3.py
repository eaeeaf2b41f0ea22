"""train.objective=grpo under ZeRO-3 (one process): the same rollouts, rewards, losses and adapter
as the same run under ZeRO-2.

Under ZeRO-3 every parameter is partitioned and gathered by forward hooks, so the rollout's
`generate`, the reference pass through `disable_adapter()` and the policy forward all run on
gathered weights; any of them reading an empty partition would change the answers or the loss.

Tolerances. The rollouts are sampled from the same seeds and logits computed from the same fp32
weights, so the sampled answers, hence the rewards, must be identical (compared exactly). Losses
and the adapter after the steps may differ by summation order only (ZeRO-3 reduces gradients in
its own buckets), i.e. fp32 rounding: losses to 1e-5 relative, the adapter to 1e-5 absolute
(tests/train/test_zero.py's tolerance for SFT across stages; the steps move LoRA weights by ~1e-3)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

GRPO = ["train.objective=grpo", "train.max_steps=3", "train.batch_size=2", "train.grpo.num_generations=4",
        "train.grpo.max_new_tokens=3", "train.grpo.temperature=1.5", "train.lr=3e-3", "train.warmup_steps=0",
        "train.save_every=1000", "train.tensorboard=false", "method.dropout=0.0", "train.seed=5", "train.log_every=1"]


def _train(data, out, overrides):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", overrides)
    recipe.data.dir = str(data)
    return train(recipe, out)


@pytest.mark.slow
def test_grpo_under_zero3_equals_zero2(tmp_path):
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=32, n_test=1, seed=1)
    # SFT -> GRPO: the short SFT stage answers yes/no about half right, so the groups' rewards
    # differ (from the untrained model every reward is 0 and no step would move anything)
    sft = tmp_path / "sft"
    _train(data, sft, ["train.max_steps=20", "train.batch_size=16", "train.lr=5e-3", "train.warmup_steps=0",
                       "train.save_every=1000", "train.tensorboard=false"])
    logs, adapters = {}, {}
    for stage in ("zero2", "zero3"):
        # the default beta (0.04): the reference pass through disable_adapter() runs too
        result = _train(data, tmp_path / stage, [*GRPO, f"train.init_from={sft}", f"train.deepspeed={stage}"])
        logs[stage] = [json.loads(line) for line in (tmp_path / stage / "train_log.jsonl").read_text().splitlines()]
        adapters[stage] = load_file(result.saved / "adapter_model.safetensors")
    two, three = logs["zero2"], logs["zero3"]
    assert [r["step"] for r in two] == [r["step"] for r in three] == [1, 2, 3]
    for a, b in zip(two, three):
        assert a["reward_mean"] == b["reward_mean"] and a["completion_length"] == b["completion_length"], (a, b)
        for key in ("loss", "kl", "clip_fraction"):
            assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-7), (key, a, b)
    # the rewards varied within groups, so the steps had something to learn from
    assert any(r["reward_std"] > 0 for r in two), two
    a, b = adapters["zero2"], adapters["zero3"]
    assert a.keys() == b.keys() and a
    assert all(t.numel() > 0 for t in b.values()), "the ZeRO-3 adapter must be gathered, not empty shards"
    sft_adapter = load_file(sft / "adapter" / "adapter_model.safetensors")
    moved = max(float((a[k] - sft_adapter[k]).abs().max()) for k in a if k in sft_adapter)
    assert moved > 1e-4, "GRPO never moved the adapter: the comparison would prove nothing"
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), (key, float((a[key] - b[key]).abs().max()))
