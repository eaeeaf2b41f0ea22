"""A process whose first contact with a model's classes is a ZeRO-3 partitioned load can still build
and run that model whole afterwards (transformers >= 5.2x + the `kernels` package: a sub-model class
first imported inside `deepspeed.zero.Init` used to lose its kernelized `__init__` and fail with
"'LlamaAttention' object has no attribute '_kernel_funcs'"; pefomed.models.bundle.import_submodel_classes).

The worker is a fresh interpreter that never imported the Llama classes: the tiny base is built
here, in the test process, as rank 0 builds it for the other ranks of a multi-process run."""

from __future__ import annotations

import subprocess
import sys

WORKER = r"""
import sys
import torch
from pefomed.models.loader import load_base
from pefomed.recipe import load_recipe
from pefomed.train.deepspeed_config import resolve
from pefomed.train.distributed import init_distributed

init_distributed()
recipe = load_recipe("tiny-demo", ["train.deepspeed=zero3"])
partitioned = load_base(sys.argv[1], recipe.model, "fp32", deepspeed=resolve(recipe.train, 1)).model
assert all(hasattr(p, "ds_numel") for p in partitioned.parameters())
whole = load_base(sys.argv[1], recipe.model, "fp32").model
with torch.no_grad():
    logits = whole.model.language_model(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state
assert torch.isfinite(logits).all()
print("whole model ran")
"""


def test_whole_model_runs_after_a_partitioned_load_in_a_fresh_process(tmp_path):
    from pefomed.models.loader import materialize_base
    from pefomed.recipe import load_recipe

    source = materialize_base(load_recipe("tiny-demo").model, tmp_path / "run")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run([sys.executable, str(script), source], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "whole model ran" in proc.stdout
