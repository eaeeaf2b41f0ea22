"""The tuning method is a recipe switch (arXiv 2403.06407 compared these on medical VLMs).

| method.name | what trains | what RUN_DIR keeps |
|---|---|---|
| lora, dora, rslora | low-rank adapters on `target_modules` of the LLM (+ vision tower if `vision_lora`) | adapter/ |
| ia3 | learned scaling vectors on `target_modules` | adapter/ |
| prefix | per-layer key/value prefixes (`num_virtual_tokens`) | adapter/ |
| prompt | input prompt embeddings (`num_virtual_tokens`) | adapter/ |
| projector | the projector only | weights/ |
| full | whole components: `full_parts` of vision, projector, llm | weights/ |

QLoRA (`method.quantize: 4bit`, LoRA family only): before the adapter is attached, every linear
layer of the frozen LLM (the output head excepted) becomes a bitsandbytes 4-bit NF4 layer with
double quantisation (`quantize_base`); LoRA then wraps those layers as peft's bnb LoRA layers.

With `train_projector` (default) the projector also trains under every adapter method; peft's
`modules_to_save` puts it in adapter/, so `PeftModel.from_pretrained` restores the whole
fine-tune. "projector" and "full" have no adapter: their trained parameters are saved in
weights/model.safetensors under the base model's own names.
"""

from __future__ import annotations

from pefomed.errors import UserError
from pefomed.methods import QUANTIZABLE_METHODS
from pefomed.models.bundle import import_peft
from pefomed.models.components import component_of, module_prefixes, target_regex
from pefomed.recipe import MethodSection



def _projector_names(model) -> list[str]:
    # modules_to_save matches by name suffix: the last part of each projector module name
    return sorted({p.split(".")[-1] for p in module_prefixes(model, "projector")})


def _adapted_components(method: MethodSection) -> list[str]:
    return ["llm", "vision"] if method.vision_lora else ["llm"]


def build_peft_config(model, method: MethodSection):
    peft = import_peft()

    save = _projector_names(model) if method.train_projector else []
    if method.train_projector and not save:
        raise UserError("method.train_projector is set but this model has no projector module pefomed recognises")
    save = save or None
    if method.name in ("prefix", "prompt"):
        config_class = peft.PrefixTuningConfig if method.name == "prefix" else peft.PromptTuningConfig
        return config_class(task_type="CAUSAL_LM", num_virtual_tokens=method.num_virtual_tokens, modules_to_save=save)
    targets = target_regex(model, _adapted_components(method), method.target_modules)
    if method.name in QUANTIZABLE_METHODS:  # the LoRA family
        return peft.LoraConfig(
            r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout, target_modules=targets,
            use_dora=method.name == "dora", use_rslora=method.name == "rslora", modules_to_save=save, bias="none")
    if method.name == "ia3":
        # IA3 scales the input of feed-forward output layers and the output of the others
        feedforward = [m for m in method.target_modules if m in ("down_proj", "fc2", "wo", "w2")]
        return peft.IA3Config(target_modules=targets, modules_to_save=save,
                              feedforward_modules=target_regex(model, _adapted_components(method), feedforward)
                              if feedforward else [])
    raise AssertionError(method.name)


def _train_parts(model, parts: list[str]) -> None:
    """Freeze everything except the named components (for methods without an adapter)."""
    hit = set()
    for name, param in model.named_parameters():
        part = component_of(name)
        param.requires_grad = part in parts
        hit.add(part) if part in parts else None
    missing = set(parts) - hit
    if missing:
        raise UserError(f"method {','.join(parts)}: this model has no {', '.join(sorted(missing))} component pefomed recognises")


def _import_bitsandbytes():
    import_peft()  # imports bitsandbytes first, without its hub-kernel lookup
    import bitsandbytes

    return bitsandbytes


def check_quantize(method: MethodSection) -> None:
    """method.quantize needs a LoRA-family method and the bitsandbytes package."""
    if method.quantize is None:
        return
    if method.name not in QUANTIZABLE_METHODS:
        raise UserError(f"method.quantize={method.quantize} (QLoRA) needs a LoRA-family method "
                        f"({', '.join(QUANTIZABLE_METHODS)}), not method.name={method.name}: the quantised "
                        f"weights are frozen, so only an adapter over them can train")
    try:
        _import_bitsandbytes()
    except ImportError:
        raise UserError(f"method.quantize={method.quantize} needs the bitsandbytes package, which is not installed",
                        hint='pip install "pefomed[qlora]" (or pip install bitsandbytes)') from None


def is_quantized(model) -> bool:
    """True when some layer of the model holds bitsandbytes 4-bit weights."""
    return any(type(m).__name__ == "Linear4bit" for m in model.modules())


def quantize_base(model, method: MethodSection):
    """QLoRA's frozen base: replace every nn.Linear of the LLM (not its output head, whose
    rounding would hit every logit, nor the vision tower or projector) by a bitsandbytes
    Linear4bit holding NF4 weights with double quantisation, computing in the dtype the layer
    was loaded in (bf16 on a GPU run, fp32 on CPU).

    The quantised data is stored in that same dtype (bitsandbytes' `quant_storage`): packed 4-bit
    values use the same bytes whatever the storage dtype, and a floating storage lets DeepSpeed
    ZeRO-3 partition and gather the weights like every other parameter (as transformers'
    `bnb_4bit_quant_storage` does for FSDP / ZeRO-3 QLoRA). Weights are quantised layer by layer
    (on this process's GPU when there is one), so at most one layer is held twice."""
    import torch

    check_quantize(method)
    bnb = _import_bitsandbytes()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    # with a GPU, quantise there (fast; the 4-bit layers stay on it and DeepSpeed moves the rest)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    replaced = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or module is head or component_of(name) != "llm":
            continue
        weight = module.weight
        dtype = weight.dtype if weight.dtype in (torch.float32, torch.bfloat16, torch.float16) else torch.float32
        layer = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                                  compute_dtype=dtype, compress_statistics=True, quant_type="nf4",
                                  quant_storage=dtype, device="meta")
        layer.weight = bnb.nn.Params4bit(weight.data, requires_grad=False, compress_statistics=True,
                                         quant_type="nf4", quant_storage=dtype, module=layer)
        if module.bias is not None:
            layer.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
        layer = layer.to(device or weight.device)  # quantises the weight (bitsandbytes does it on the move)
        module.weight = None  # drop the full-precision copy now, not after the whole model
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        replaced += 1
    if not replaced:
        raise UserError(f"method.quantize={method.quantize}: this model has no linear layer in its LLM to quantise")
    # peft reads this flag to wrap the 4-bit layers in its bitsandbytes LoRA layers
    model.is_loaded_in_4bit = True
    return model


def apply_method(model, method: MethodSection):
    """Freeze the base model and make the method's parameters trainable; returns the model to train
    (a peft model for adapter methods, the base model itself for projector / full). With
    method.quantize the LLM is quantised to 4 bits first (QLoRA)."""
    peft = import_peft()

    check_quantize(method)
    if method.quantize and not is_quantized(model):
        quantize_base(model, method)
    if method.name == "projector":
        _train_parts(model, ["projector"])
        return model
    if method.name == "full":
        _train_parts(model, list(method.full_parts))
        return model
    config = build_peft_config(model, method)
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:
        # peft says "Target modules ... not found in the base model"; add what to do about it
        raise UserError(f"method {method.name}: {err}",
                        hint=f"method.target_modules={method.target_modules} must name modules of the LLM") from None
