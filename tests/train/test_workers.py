"""DataLoader workers build the same batches: a run with train.num_workers=2 ends with the
same adapter and losses as one without, and logs how long each step waited for its data."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file


@pytest.mark.slow
def test_workers_change_nothing_but_the_wait(demo_data, tmp_path):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    results = {}
    for workers in (0, 2):
        recipe = load_recipe("tiny-demo", ["train.max_steps=4", "train.batch_size=4", f"train.num_workers={workers}",
                                           "train.prefetch_batches=2"])
        recipe.data.dir = str(demo_data)
        run = tmp_path / f"w{workers}"
        train(recipe, run)
        log = [json.loads(line) for line in open(run / "train_log.jsonl")]
        results[workers] = (load_file(run / "adapter" / "adapter_model.safetensors"), [r["loss"] for r in log], log)
    (a0, loss0, log0), (a2, loss2, log2) = results[0], results[2]
    assert loss0 == loss2
    assert a0.keys() == a2.keys() and all((a0[k] == a2[k]).all() for k in a0)
    assert all(r["data_wait_s"] >= 0 and r["data_wait_s"] <= r["elapsed_s"] for r in log0 + log2)
