"""The PEFT method is a recipe switch (arXiv 2403.06407 compared these on medical VLMs).

`apply_method` wraps the base model in a peft model whose adapter folder holds everything that
was trained: the adapter weights plus trainable non-adapter modules (the projector) through
peft's `modules_to_save`, so `PeftModel.from_pretrained` restores the whole fine-tune.
"""

from __future__ import annotations

from pefomed.errors import UserError
from pefomed.models.components import module_prefixes, target_regex
from pefomed.recipe import MethodSection


def _projector_names(model) -> list[str]:
    # modules_to_save matches by name suffix: the last part of each projector module name
    return sorted({p.split(".")[-1] for p in module_prefixes(model, "projector")})


def _llm_and_maybe_vision(method: MethodSection) -> list[str]:
    return ["llm", "vision"] if method.vision_lora else ["llm"]


def build_peft_config(model, method: MethodSection):
    import peft

    save = _projector_names(model) if method.train_projector else []
    if method.train_projector and not save:
        raise UserError("method.train_projector is set but this model has no projector module pefomed recognises")
    targets = target_regex(model, _llm_and_maybe_vision(method), method.target_modules)
    if method.name in ("lora", "dora", "rslora"):
        return peft.LoraConfig(
            r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout, target_modules=targets,
            use_dora=method.name == "dora", use_rslora=method.name == "rslora",
            modules_to_save=save or None, bias="none")
    if method.name == "ia3":
        feedforward = [m for m in method.target_modules if m in ("down_proj", "fc2", "wo", "w2")]
        return peft.IA3Config(target_modules=targets, modules_to_save=save or None,
                              feedforward_modules=target_regex(model, _llm_and_maybe_vision(method), feedforward) if feedforward else [])
    raise UserError(f"method.name {method.name!r} is not available in this version (available: lora, dora, rslora, ia3)")


def apply_method(model, method: MethodSection):
    """Freeze the base model and attach the adapter; returns the peft model."""
    import peft

    config = build_peft_config(model, method)
    try:
        wrapped = peft.get_peft_model(model, config)
    except ValueError as err:
        # peft says "Target modules ... not found in the base model"; add what to do about it
        raise UserError(f"method {method.name}: {err}",
                        hint=f"method.target_modules={method.target_modules} must name modules of the LLM") from None
    return wrapped
