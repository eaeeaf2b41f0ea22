"""The gradient of a global batch does not depend on how it is split into micro-batches,
accumulation steps and processes, even when answers have very different lengths (real VQA-RAD
answers: "yes" next to multi-word ones). The loss is the mean over the answer tokens of the whole
global batch (pefomed.train.loss)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from pefomed.data.collate import IGNORE_INDEX
from pefomed.train.loss import answer_tokens, scaled_for_deepspeed, token_loss_sum
from test_two_processes import torchrun

COMMON = ["train.max_steps=2", "train.lr=5e-3", "method.dropout=0.0", "train.seed=3", "train.warmup_steps=0"]


def test_token_weighting_is_split_invariant_where_a_mean_of_means_is_not():
    torch.manual_seed(0)
    logits = torch.randn(4, 6, 11, requires_grad=True)
    labels = torch.full((4, 6), IGNORE_INDEX)
    labels[0, 5] = 3  # a one-token answer ...
    labels[1, 1:] = torch.tensor([1, 2, 3, 4, 5])  # ... beside a five-token one
    labels[2, 4:] = torch.tensor([7, 8])
    labels[3, 3:] = torch.tensor([9, 1, 2])
    whole = token_loss_sum(logits, labels) / answer_tokens(labels)
    (grad_whole,) = torch.autograd.grad(whole, logits)
    parts = [(slice(0, 1), slice(1, 4)), (slice(0, 2), slice(2, 4))]
    for first, second in parts:
        total = answer_tokens(labels)
        # what pefomed hands DeepSpeed, with DeepSpeed's own 1/accumulation factor applied back
        split = sum(scaled_for_deepspeed(token_loss_sum(logits[s], labels[s]), total, 2, 1) / 2 for s in (first, second))
        (grad_split,) = torch.autograd.grad(split, logits)
        assert torch.allclose(grad_split, grad_whole, atol=1e-7)
        mean_of_means = sum(token_loss_sum(logits[s], labels[s]) / answer_tokens(labels[s]) / 2 for s in (first, second))
        (grad_means,) = torch.autograd.grad(mean_of_means, logits)
        assert not torch.allclose(grad_means, grad_whole, atol=1e-4)  # what a per-micro-batch mean would give


def _adapter(tmp_path, data, name, extra):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", [*COMMON, *extra])
    recipe.data.dir = str(data)
    return load_file(train(recipe, tmp_path / name).saved / "adapter_model.safetensors")


@pytest.mark.slow
def test_one_global_batch_one_update_however_it_is_split(tmp_path, demo_data):
    from pefomed.records import read_split

    answers = {len(s.answer.split()) for s in read_split(demo_data, "train")}
    assert len(answers) > 2, "the data must have answers of different lengths for this test to mean anything"
    reference = _adapter(tmp_path, demo_data, "8x1", ["train.batch_size=8", "train.grad_accum=1"])
    for batch, accum in ((2, 4), (1, 8)):
        other = _adapter(tmp_path, demo_data, f"{batch}x{accum}", [f"train.batch_size={batch}", f"train.grad_accum={accum}"])
        for key in reference:
            assert torch.allclose(reference[key], other[key], atol=2e-5), (batch, accum, key)
    proc = torchrun(["train", "tiny-demo", "--data", str(demo_data), "--out", str(tmp_path / "2proc"),
                     "train.batch_size=2", "train.grad_accum=2", *COMMON], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = load_file(tmp_path / "2proc" / "adapter" / "adapter_model.safetensors")
    for key in reference:
        assert torch.allclose(reference[key], two[key], atol=2e-5), ("2 processes", key)
