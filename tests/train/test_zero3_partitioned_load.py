"""Under ZeRO-3 each process loads only its partition of the frozen base (deepspeed.zero.Init through
transformers' DeepSpeed integration, pefomed.models.loader), never the whole model: two CPU
processes (torchrun, gloo) check that right after the training loop's own model build, gather the
partitions back to exactly the checkpoint's values, evaluate and train; the trained adapter equals
the one of a one-process ZeRO-2 run with the same global batch (the path that loads whole), and
the ZeRO-3 run exports like any other. The composed kind's two parts load partitioned too."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

COMMON = ["train.max_steps=3", "train.lr=1e-2", "method.dropout=0.0", "train.seed=4"]

WORKER = r"""
import json, sys
from pathlib import Path

import torch

from pefomed.train.loop import _build_model, _quiet_deepspeed, train

_quiet_deepspeed()
from pefomed.models.loader import load_base, materialize_base
from pefomed.recipe import load_recipe
from pefomed.train.distributed import init_distributed

data, out, common = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
rank, world = init_distributed()

# 1. the training loop's own model build (base load + LoRA attach), before DeepSpeed's engine exists
recipe = load_recipe("tiny-demo", [*common, "train.deepspeed=zero3", "train.batch_size=2"])
recipe.data.dir = data
model, _ = _build_model(recipe, out / "built", rank == 0, resume=False)
base = {n: p for n, p in model.named_parameters() if not p.requires_grad}
trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
report = {
    "rank": rank, "world": world,
    "base_partitioned": all(hasattr(p, "ds_numel") for p in base.values()),
    "base_local_numel": sum(p.numel() for p in base.values()),  # the placeholders ZeRO-3 leaves
    "base_partition_numel": sum(p.ds_tensor.numel() for p in base.values() if hasattr(p, "ds_tensor")),
    "base_full_numel": sum(getattr(p, "ds_numel", p.numel()) for p in base.values()),
    "largest_partition_fraction": max(p.ds_tensor.numel() / p.ds_numel for p in base.values()
                                      if hasattr(p, "ds_numel")),
    "trainable": len(trainable),
}

# 2. the partitions hold the checkpoint's values: gather them and compare with a whole load
import deepspeed

whole = load_base(materialize_base(recipe.model, out / "built"), recipe.model, "fp32").model
expected = dict(whole.named_parameters())
worst, compared = 0.0, 0
for name, param in model.get_base_model().named_parameters():
    # peft's wrappers: the adapted layer's own weight, and the projector's frozen original and its
    # trainable copy (peft copies it gathered) all hold the checkpoint's values
    plain = (name.replace(".base_layer", "").replace(".original_module", "")
             .replace(".modules_to_save.default", ""))
    if plain not in expected:
        continue  # LoRA's own matrices
    with deepspeed.zero.GatheredParameters([param] if hasattr(param, "ds_numel") else []):
        worst = max(worst, float((param.data - expected[plain].data).abs().max()))
    compared += 1
report["max_gathered_difference"], report["compared"] = worst, compared
report["expected"] = len(expected)

# 2b. kind composed: both parts load partitioned, with the checkpoints' values; the projector (the
# wrapper's own, small and trained) is made whole, and starts as in a whole load with the same seed
from pefomed.train.deepspeed_config import resolve

composed = load_recipe("tiny-demo", [*common, "train.deepspeed=zero3", *json.loads(sys.argv[4])])
torch.manual_seed(0)
parts = load_base("composed", composed.model, "fp32", deepspeed=resolve(composed.train, world),
                  method=composed.method).model
torch.manual_seed(0)
whole = dict(load_base("composed", composed.model, "fp32").model.named_parameters())
report["composed_unpartitioned"] = sorted(n for n, p in parts.named_parameters() if not hasattr(p, "ds_numel"))
report["composed_worst"] = 0.0
for name, param in parts.named_parameters():
    with deepspeed.zero.GatheredParameters([param] if hasattr(param, "ds_numel") else []):
        report["composed_worst"] = max(report["composed_worst"], float((param.data - whole[name].data).abs().max()))

# 3. a whole training run under ZeRO-3 (with an evaluation at the end), as `pefomed train` does
recipe = load_recipe("tiny-demo", [*common, "train.deepspeed=zero3", "train.batch_size=2", "train.eval_every=3",
                                   "data.val_split=test"])
recipe.data.dir = data
train(recipe, out / "run")
(out / f"rank{rank}.json").write_text(json.dumps(report))
"""


def _composed_parts(root):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "composed"))
    from composed_parts import build_parts, composed_overrides

    return composed_overrides(*build_parts(root))


def _torchrun(script, args, cwd, timeout=500):
    exe = shutil.which("torchrun")
    assert exe, "torchrun (installed with torch) is missing"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    return subprocess.run([exe, "--nproc_per_node", "2", "--master_port", port, str(script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_zero3_loads_partitions_and_trains_like_a_whole_load(tmp_path):
    from pefomed.cli.app import main
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=12, n_test=2)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "two"
    proc = _torchrun(script, [str(data), str(out), json.dumps(COMMON), json.dumps(_composed_parts(tmp_path / "parts"))],
                     cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]

    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["world"] == 2
        assert report["base_partitioned"], "every frozen base parameter must be a ZeRO-3 partition after load"
        assert report["base_local_numel"] == 0, "no process may hold a whole base parameter"
        # each process keeps about half of every parameter (DeepSpeed pads to an even split)
        assert report["largest_partition_fraction"] <= 0.5 + 1e-3
        assert report["base_partition_numel"] <= report["base_full_numel"] / 2 + 64 * 100
        assert report["trainable"] > 0
        assert report["max_gathered_difference"] == 0.0
        assert report["compared"] >= report["expected"]
        assert report["composed_unpartitioned"] == ["multi_modal_projector.bias", "multi_modal_projector.weight"]
        assert report["composed_worst"] == 0.0
    assert reports[0]["base_full_numel"] == reports[1]["base_full_numel"] > 100_000

    # the same global batch on one process, ZeRO-2 (the base loaded whole): the same adapter
    assert main(["train", "tiny-demo", "--data", str(data), "--out", str(tmp_path / "one"),
                 "train.batch_size=4", "train.deepspeed=zero2", *COMMON]) == 0
    one = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    two = load_file(out / "run" / "adapter" / "adapter_model.safetensors")
    assert one.keys() == two.keys() and all(t.numel() > 0 for t in two.values())
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5), key
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "one" / "train_log.jsonl")]
    assert losses == pytest.approx([json.loads(line)["loss"] for line in open(out / "run" / "train_log.jsonl")],
                                   abs=1e-5)
    assert (out / "run" / "eval_log.jsonl").is_file(), "the ZeRO-3 run must have evaluated"

    # the ZeRO-3 run exports like any other (a merged folder transformers loads directly)
    assert main(["export", str(out / "run"), "--merge", "--out", str(tmp_path / "exported")]) == 0
    from transformers import AutoModelForImageTextToText

    exported = AutoModelForImageTextToText.from_pretrained(tmp_path / "exported")
    assert sum(p.numel() for p in exported.parameters()) == reports[0]["base_full_numel"]
