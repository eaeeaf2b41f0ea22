"""model.kind `hf`: any checkpoint that AutoModelForImageTextToText + AutoProcessor load, from a
local folder or (on a machine that can reach a hub) a hub id: LLaVA, Qwen2-VL/2.5-VL, Gemma 3,
Idefics3/SmolVLM, PaliGemma, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field

from pefomed.errors import UserError
from pefomed.models.bundle import (ModelBundle, attention_error, attention_kwargs, import_submodel_classes, looks_local,
                                   quiet_transformers, torch_dtype)
from pefomed.models.kinds import ModelKind, register
from pefomed.recipe import ModelSection


def check_path(key: str, value: str) -> None:
    # a hub id is "org/name"; anything else must be a folder on this machine
    if looks_local(value) and not Path(value).expanduser().is_dir():
        raise UserError(f"recipe key '{key}': {value!r} is not a folder (nor an org/name hub id)")


def _check(section: ModelSection) -> None:
    if not section.name_or_path:
        raise UserError("recipe key 'model.name_or_path' is required when model.kind is 'hf'")
    check_path("model.name_or_path", section.name_or_path)


def _materialize(section: ModelSection, run_dir: Path) -> str:
    _check(section)
    return section.name_or_path


def load_pretrained(source: str, section: ModelSection, precision: str = "fp32") -> ModelBundle:
    quiet_transformers()
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    if looks_local(source) and not Path(source).expanduser().is_dir():
        raise UserError(f"model {source!r}: no such folder")
    # model.attn_implementation reaches every sub-model (vision tower, LLM): transformers hands a
    # string kernel name down to the sub-configs
    attention = attention_kwargs(section)
    try:
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=section.trust_remote_code)
        # before a ZeRO-3 load opens zero.Init (see import_submodel_classes)
        import_submodel_classes(AutoConfig.from_pretrained(source, trust_remote_code=section.trust_remote_code))
        model = AutoModelForImageTextToText.from_pretrained(
            source, dtype=torch_dtype(precision), trust_remote_code=section.trust_remote_code, **attention)
    except OSError as err:
        raise UserError(f"model {source!r} could not be loaded: {err}") from None
    except (ValueError, ImportError) as err:
        refused = attention_error(err, source, section)
        if refused is not None:
            raise refused from None
        if isinstance(err, ImportError):
            raise
        # transformers says "Unrecognized configuration class ..." for a text-only or vision-only
        # checkpoint; name what kind of checkpoint model.kind=hf needs
        raise UserError(f"model {source!r} is not an image-text-to-text checkpoint "
                        f"(AutoModelForImageTextToText + AutoProcessor): {str(err).splitlines()[0]}",
                        hint="model.kind=composed assembles a vision encoder and a text-only LLM") from None
    return ModelBundle(model=model, processor=processor, source=source)


HF = register(ModelKind(name="hf", check=_check, materialize=_materialize, load=load_pretrained,
                        keys={"name_or_path": (Optional[str], Field(None, min_length=1,
                                                                    description="hub id or local folder (kind=hf)"))},
                        describe=lambda section: f"`{section.name_or_path}`"))
