"""Load the base model and processor a recipe names.

- kind `tiny`: the built-in tiny LLaVA, built into RUN_DIR/base_model by `materialize_base` so
  that inference reloads exactly the weights that were trained on.
- kind `hf`: any checkpoint AutoModelForImageTextToText + AutoProcessor load (local folder or,
  on a machine that can reach a hub, a hub id).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.errors import UserError
from pefomed.recipe import ModelSection


@dataclass
class ModelBundle:
    model: object  # a transformers PreTrainedModel (or a PeftModel around one)
    processor: object
    source: str  # where the base weights were loaded from


def quiet_transformers() -> None:
    """Weight-loading progress bars are noise next to our own progress output."""
    import warnings

    from transformers.utils import logging as hf_logging

    # peft still calls a transformers property that warns on every load
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _looks_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") != 1


def check_model_source(section: ModelSection) -> None:
    """Cheap checks of the recipe's model paths, before any process group or RUN_DIR exists."""
    if section.kind == "hf":
        if not section.name_or_path:
            raise UserError("recipe key 'model.name_or_path' is required when model.kind is 'hf'")
        paths = {"model.name_or_path": section.name_or_path}
    elif section.kind == "composed":
        paths = {"model.composed.vision_name_or_path": section.composed.vision_name_or_path,
                 "model.composed.llm_name_or_path": section.composed.llm_name_or_path}
        missing = [key for key, value in paths.items() if not value]
        if missing:
            raise UserError(f"model.kind 'composed' needs {' and '.join(missing)}")
    else:
        return
    for key, value in paths.items():
        # a hub id is "org/name"; anything else must be a folder on this machine
        if _looks_local(value) and not Path(value).expanduser().is_dir():
            raise UserError(f"recipe key '{key}': {value!r} is not a folder (nor an org/name hub id)")


def materialize_base(section: ModelSection, run_dir: Path) -> str:
    """Where the base weights live for this run; builds the tiny model into RUN_DIR when needed."""
    if section.kind == "tiny":
        from pefomed.models.tiny import build_tiny

        target = run_dir / "base_model"
        if not (target / "config.json").is_file():
            build_tiny(section.tiny, target)
        return str(target)
    if section.kind == "composed":
        return "composed"  # assembled from model.composed.* by pefomed.models.composed
    check_model_source(section)
    return section.name_or_path


def torch_dtype(precision: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def load_base(source: str, section: ModelSection, precision: str = "fp32") -> ModelBundle:
    quiet_transformers()
    if section.kind == "composed":
        from pefomed.models.composed import load_composed

        return load_composed(section, precision)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if _looks_local(source) and not Path(source).expanduser().is_dir():
        raise UserError(f"model {source!r}: no such folder")
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=section.trust_remote_code)
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=torch_dtype(precision), trust_remote_code=section.trust_remote_code)
    except OSError as err:
        raise UserError(f"model {source!r} could not be loaded: {err}") from None
    except ValueError as err:
        # transformers says "Unrecognized configuration class ..." for a text-only or vision-only
        # checkpoint; name what kind of checkpoint model.kind=hf needs
        raise UserError(f"model {source!r} is not an image-text-to-text checkpoint "
                        f"(AutoModelForImageTextToText + AutoProcessor): {str(err).splitlines()[0]}",
                        hint="model.kind=composed assembles a vision encoder and a text-only LLM") from None
    return ModelBundle(model=model, processor=processor, source=source)
