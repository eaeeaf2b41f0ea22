"""pefomed.models.bundle.innermost is the one model unwrapper (training's loss, the feature cache
and the ranker ask it what the model's forward supports): through a real peft wrapper of either
kind (LoRA's PeftModel > LoraModel > model, prompt learning's PeftModel > model) and a real
DistributedDataParallel around it, it reaches the very transformers model that was wrapped."""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys

import pytest

from pefomed.models.bundle import innermost


def _tiny_base(tmp_path, method: str):
    from pefomed.models.loader import load_base, materialize_base
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", [f"method.name={method}"])
    return load_base(materialize_base(recipe.model, tmp_path), recipe.model).model, recipe


@pytest.mark.parametrize("method", ["lora", "prompt"])
def test_innermost_reaches_the_wrapped_model_through_peft(tmp_path, method):
    from pefomed.infer.rank import _accepts_logits_to_keep
    from pefomed.models.peft_methods import apply_method
    from pefomed.train.loss import supports_logits_to_keep

    base, recipe = _tiny_base(tmp_path, method)
    assert innermost(base) is base  # nothing to unwrap
    wrapped = apply_method(base, recipe.method)
    assert wrapped is not base and hasattr(wrapped, "peft_config")
    assert innermost(wrapped) is base
    # the loss and the ranker read the same answer off it: the wrapped model's own signature
    expected = "logits_to_keep" in inspect.signature(base.forward).parameters
    assert supports_logits_to_keep(wrapped) is expected and _accepts_logits_to_keep(wrapped) is expected


# In a child: torch.distributed's process group is global state of the process that opens it.
DDP_CHILD = """
import os, sys
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from pefomed.models.bundle import innermost
from pefomed.models.loader import load_base, materialize_base
from pefomed.models.peft_methods import apply_method
from pefomed.recipe import load_recipe

recipe = load_recipe("tiny-demo", ["method.name=lora"])
base = load_base(materialize_base(recipe.model, sys.argv[1]), recipe.model).model
peft_model = apply_method(base, recipe.method)
dist.init_process_group("gloo", rank=0, world_size=1)
engine = DistributedDataParallel(peft_model)
assert innermost(engine) is base, type(innermost(engine))
assert innermost(engine.module) is base
dist.destroy_process_group()
print("reached the base")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_innermost_reaches_the_wrapped_model_through_ddp_and_peft(tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
    result = subprocess.run([sys.executable, "-c", DDP_CHILD, str(tmp_path)], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "reached the base" in result.stdout, result.stderr[-3000:]
