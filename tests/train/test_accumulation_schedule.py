"""Gradient accumulation, the learning-rate schedule and determinism."""

import math

import pytest
import torch
from safetensors.torch import load_file

from pefomed.recipe import load_recipe
from pefomed.train.schedule import lr_multiplier


def test_warmup_from_start_lr_then_cosine_to_min_lr():
    cfg = load_recipe("tiny-demo", ["train.lr=1e-5", "train.warmup_start_lr=1e-6", "train.min_lr=1e-6",
                                    "train.warmup_steps=10", "train.scheduler=cosine"]).train
    lr = [cfg.lr * lr_multiplier(s, 110, cfg) for s in range(111)]
    assert lr[0] == pytest.approx(1e-6) and lr[10] == pytest.approx(1e-5)
    assert all(a < b for a, b in zip(lr[:10], lr[1:11])), "warmup rises linearly"
    assert lr[60] == pytest.approx(1e-6 + (1e-5 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr[110] == pytest.approx(1e-6)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:])), "cosine decays monotonically"


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=16, n_test=2)


def adapter(tmp_path, data, name, extra):
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", ["train.max_steps=3", "train.lr=1e-2", "method.dropout=0.0", *extra])
    recipe.data.dir = str(data)
    return load_file(train(recipe, tmp_path / name).saved / "adapter_model.safetensors")


@pytest.mark.slow
def test_accumulating_two_micro_batches_equals_one_batch_of_both(tmp_path, spot_data):
    # micro-batches 2 x 2 accumulated vs batches of 4: same samples per optimizer step (the data
    # order is a per-epoch permutation sliced in consecutive runs of micro-batches)
    whole = adapter(tmp_path, spot_data, "whole", ["train.batch_size=4", "train.grad_accum=1"])
    accumulated = adapter(tmp_path, spot_data, "acc", ["train.batch_size=2", "train.grad_accum=2"])
    for key in whole:
        assert torch.allclose(whole[key], accumulated[key], atol=1e-5), key


@pytest.mark.slow
def test_same_seed_same_adapter_other_seed_other_adapter(tmp_path, spot_data):
    a = adapter(tmp_path, spot_data, "a", ["train.batch_size=4", "method.dropout=0.1"])
    b = adapter(tmp_path, spot_data, "b", ["train.batch_size=4", "method.dropout=0.1"])
    c = adapter(tmp_path, spot_data, "c", ["train.batch_size=4", "method.dropout=0.1", "train.seed=1"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
