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
