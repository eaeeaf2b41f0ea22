"""Types every model kind shares (a leaf module: it imports no other pefomed model module, so the
kinds, the loader and the RUN_DIR owner can all import it without forming a circle)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ModelBundle:
    model: object  # a transformers PreTrainedModel (or a PeftModel around one)
    processor: object
    source: str  # where the base weights were loaded from


def innermost(model):
    """The transformers model under any DeepSpeed engine and peft wrappers: the one place that
    unwraps (training's loss, the feature cache and the ranker all ask the innermost model what
    its forward supports; a peft wrapper's forward takes **kwargs and hands them on)."""
    import torch

    for _ in range(8):  # engine > PeftModel > LoraModel > model at most; a bound, not a loop forever
        if hasattr(model, "get_base_model"):  # peft.PeftModel
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):  # DeepSpeedEngine, DDP
            model = model.module
        else:
            break
    return model


def quiet_transformers() -> None:
    """Weight-loading progress bars are noise next to our own progress output."""
    import os
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        # DeepSpeed (imported by peft/transformers integrations) otherwise warns that it "set the
        # accelerator to CPU" on every command of a machine without a GPU
        os.environ["DS_ACCELERATOR"] = "cpu"

    # peft still calls a transformers property that warns on every load
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def import_peft():
    """The peft module, imported so that nothing looks for a kernel on a model hub.

    Why: peft imports bitsandbytes whenever it is installed (the qlora and test extras), and
    bitsandbytes' CPU backend, on a CPU with AVX-512 BF16, asks the `kernels` package to fetch
    "kernels-community/quantization-bitsandbytes" from the Hugging Face hub at import time: a network
    connection and a warning on every command, even a plain LoRA export, on a machine that must work
    air-gapped. bitsandbytes is imported here first with `kernels` hidden, so it takes its own
    built-in CPU kernels (the ones it falls back to anyway) without asking the hub
    (tests/skeleton/test_offline.py). Hub kernels are used only where a recipe asks for them."""
    import importlib.util
    import logging
    import sys

    if "bitsandbytes" not in sys.modules and importlib.util.find_spec("bitsandbytes") is not None:
        # the fallback is logged as a warning; it is the expected path here, not a problem
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
        hidden = sys.modules.get("kernels")
        sys.modules["kernels"] = None  # `from kernels import get_kernel` raises ImportError
        try:
            import bitsandbytes  # noqa: F401
        finally:
            if hidden is None:
                del sys.modules["kernels"]
            else:
                sys.modules["kernels"] = hidden
    import peft

    return peft


def import_submodel_classes(config) -> None:
    """Import the modeling module of every sub-model `config` names (a LLaVA's text and vision
    models, recursively) before any `from_pretrained` of it.

    Why: transformers >= 5.2x decorates attention classes with the `kernels` package's
    `use_kernelized_func`, which replaces `cls.__init__` once, when the module is first imported.
    DeepSpeed's `zero.Init` (ZeRO-3 partitioned loading) wraps the `__init__` of every class defined
    while it is open and, on exit, puts back the `__init__` it saw at class creation, i.e. the one
    from before the decorator ran. A sub-model class first imported inside `zero.Init` (a LLaVA
    builds its LLM with `AutoModel.from_config` there) therefore loses the decorator's `__init__`
    but keeps its `forward`, and every instance built later in that process fails with
    "'LlamaAttention' object has no attribute '_kernel_funcs'". Importing first keeps the class
    whole (tests/train/test_zero3_kernelized_classes.py)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    pending, seen = [config], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        try:
            MODEL_MAPPING[type(current)]  # the lazy mapping imports the class's module
        except KeyError:
            pass  # a config with no AutoModel class (BLIP-2's vision config): nothing built by name
        for name in getattr(current, "sub_configs", {}) or {}:
            sub = getattr(current, name, None)
            if sub is not None and hasattr(sub, "model_type"):
                pending.append(sub)


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def is_partitioned(param) -> bool:
    """A DeepSpeed ZeRO-3 parameter: this process holds only its partition (`param.ds_tensor`);
    `param.ds_numel` / `ds_shape` are the full parameter's."""
    return hasattr(param, "ds_numel")


def attention_kwargs(section) -> dict:
    """from_pretrained's `attn_implementation` for model.attn_implementation, checked first: a
    flash-attn request on a machine without the package or a GPU would otherwise surface as an
    import error deep inside transformers."""
    import importlib.util

    import torch

    from pefomed.errors import UserError

    choice = section.attn_implementation
    if choice == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise UserError("model.attn_implementation=flash_attention_2 needs the flash-attn package, which is "
                            "not installed", hint="pip install flash-attn (CUDA GPUs only), or use sdpa or eager")
        if not torch.cuda.is_available():
            raise UserError("model.attn_implementation=flash_attention_2 needs a CUDA GPU; use sdpa or eager here")
    return {"attn_implementation": choice}


def attention_error(err: Exception, source: str, section):
    """A UserError for transformers' "X does not support ... attention" refusal, or None."""
    from pefomed.errors import UserError

    text = str(err)
    if "attention" in text.lower() and ("support" in text.lower() or "attn_implementation" in text):
        return UserError(f"model {source!r} cannot run with model.attn_implementation="
                         f"{section.attn_implementation}: {text.splitlines()[0]}",
                         hint="model.attn_implementation=eager works for every model")
    return None


def looks_local(name: str) -> bool:
    """A hub id is exactly "org/name"; anything else (or an existing path) means a local folder."""
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") != 1
