"""Load the base model and processor a recipe names, whatever its kind (pefomed.models.kinds).

Importing this module registers every installed kind; callers never branch on `model.kind`.

Host memory: every kind loads through transformers' `from_pretrained(dtype=...)`, which builds the
model on the meta device in the requested dtype and fills it from the checkpoint, so a bf16 run of
a bf16 checkpoint never holds a full-precision copy (tests/train/test_host_memory.py). Under
DeepSpeed ZeRO-3 the load runs inside `deepspeed.zero.Init` (transformers' DeepSpeed
integration), so each process keeps only its partition of every parameter from the start
(tests/train/test_zero3_partitioned_load.py).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from pefomed.models.bundle import ModelBundle, is_partitioned, quiet_transformers, torch_dtype  # noqa: F401 (re-exported)
from pefomed.models.kinds import kind_of
from pefomed.recipe import ModelSection, model_kinds

# Each kind's module registers it on import: pyproject.toml lists them (entry points
# pefomed.model_kinds), and this loads them all, so a saved composed model's config class is
# known to transformers before anything loads.
model_kinds()


def check_model_source(section: ModelSection) -> None:
    """Cheap checks of the recipe's model paths, before any process group or RUN_DIR exists."""
    kind_of(section).check(section)


def materialize_base(section: ModelSection, run_dir: Path) -> str:
    """Where the base weights live for this run; builds the tiny model into RUN_DIR when needed."""
    return kind_of(section).materialize(section, Path(run_dir))


def partitions_at_load(deepspeed: dict | None, method=None) -> bool:
    """True when the base is loaded partitioned: ZeRO-3, and no QLoRA. QLoRA replaces each whole
    linear layer by a 4-bit one (pefomed.models.peft_methods.quantize_base), which needs the
    layer's full weight; transformers, too, never runs zero.Init for a quantised model."""
    stage = int((deepspeed or {}).get("zero_optimization", {}).get("stage", 0))
    return stage == 3 and not (method is not None and getattr(method, "quantize", None))


@contextmanager
def zero3_partitioned(deepspeed: dict | None):
    """While open, every `from_pretrained` builds its model inside `deepspeed.zero.Init` and the
    first process copies the checkpoint into the partitions (the others read only shapes), so no
    process ever holds the whole model. transformers finds the config through a module-level
    weak reference that `HfDeepSpeedConfig` sets: it is kept alive here and cleared on exit, so a
    later `from_pretrained` in the same process (`load_run` after training) loads whole again."""
    if deepspeed is None:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    held = HfDeepSpeedConfig(deepspeed)
    try:
        yield held
    finally:
        unset_hf_deepspeed_config()


def load_base(source: str, section: ModelSection, precision: str = "fp32", deepspeed: dict | None = None,
              method=None) -> ModelBundle:
    """The base model and processor, in `precision`. With `deepspeed` (the run's resolved DeepSpeed
    config) at ZeRO stage 3, and no QLoRA (`method.quantize`), each process loads only its
    partition of the base (see `zero3_partitioned`)."""
    import torch

    quiet_transformers()
    # Loading must not move the global RNG: under zero.Init transformers initialises the empty
    # partitions before it copies the checkpoint in, which draws random numbers, and the adapter
    # attached next (LoRA's init) must start from the same RNG state whichever way the base loaded.
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices), \
            zero3_partitioned(deepspeed if partitions_at_load(deepspeed, method) else None):
        return kind_of(section).load(source, section, precision)


def describe_base(section: ModelSection) -> str:
    return kind_of(section).describe(section)
