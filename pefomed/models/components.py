"""Naming the three parts of a vision-language model: vision encoder, projector, LLM.

Every image-text-to-text family in transformers names its parts a little differently
(LLaVA/Gemma 3/PaliGemma: vision_tower + multi_modal_projector + language_model; Qwen2-VL:
visual with its projector visual.merger; Idefics3/SmolVLM: vision_model + connector +
text_model). The patterns below map a parameter or module name to its part, projector first
because Qwen's projector lives inside its vision module. The composed PeFoMed model uses the
same names (vision_tower, multi_modal_projector, language_model).

tests/models/test_families.py checks these names against tiny real checkpoints of LLaVA
(Mistral), Qwen2-VL, Qwen2.5-VL, Gemma 3, Idefics3 and PaliGemma: every parameter lands in one
of the three parts, LoRA only in the LLM, the projector in the adapter.
"""

from __future__ import annotations

import re

COMPONENT_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("projector", re.compile(r"(^|\.)(multi_modal_projector|mm_projector|connector|merger|projector)(\.|$)")),
    ("vision", re.compile(r"(^|\.)(vision_tower|visual|vision_model|vision_encoder|image_encoder)(\.|$)")),
    ("llm", re.compile(r"(^|\.)(language_model|text_model|lm_head|embed_tokens|model\.layers|model\.norm)(\.|$)")),
]


def component_of(name: str) -> str:
    """'vision', 'projector', 'llm' or 'other' for a parameter/module name."""
    for component, pattern in COMPONENT_PATTERNS:
        if pattern.search(name):
            return component
    return "other"


def module_prefixes(model, component: str) -> list[str]:
    """The outermost module names belonging to `component` (e.g. ['model.language_model', 'lm_head'])."""
    prefixes: list[str] = []
    for name, _ in model.named_modules():
        if not name or component_of(name) != component:
            continue
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        prefixes.append(name)
    return prefixes


def target_regex(model, components: list[str], leaf_names: list[str]) -> str:
    """A PEFT target_modules regex: modules named `leaf_names` inside `components` only.

    PEFT full-matches a string target against each module name, so LoRA can never land on the
    vision tower's own q_proj/v_proj unless 'vision' is asked for.
    """
    prefixes = [p for c in components for p in module_prefixes(model, c)]
    if not prefixes or not leaf_names:
        return r"^$"  # matches nothing; the caller reports that clearly
    heads = "|".join(re.escape(p) for p in prefixes)
    leaves = "|".join(re.escape(n) for n in leaf_names)
    return rf"^({heads})(\..*)?\.({leaves})$"


def count_parameters(model) -> dict:
    """Trainable and total parameters per component (what trainable.json records)."""
    report: dict[str, dict[str, int]] = {}
    for name, param in model.named_parameters():
        # adapter weights (lora_A, ...) sit inside the module they adapt and count for its component
        part = component_of(name.replace("base_model.model.", "", 1))
        entry = report.setdefault(part, {"trainable": 0, "total": 0})
        quant_state = getattr(param, "quant_state", None)  # bitsandbytes 4-bit: packed, count the real shape
        n = (param.ds_numel if hasattr(param, "ds_numel") else
             quant_state.shape.numel() if quant_state is not None else param.numel())
        entry["total"] += n
        if param.requires_grad:
            entry["trainable"] += n
    total = {"trainable": sum(v["trainable"] for v in report.values()), "total": sum(v["total"] for v in report.values())}
    return {"components": report, "all": total,
            "trainable_percent": round(100.0 * total["trainable"] / max(total["total"], 1), 4)}
