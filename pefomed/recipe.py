"""Recipes: the single source of truth for a run.

A recipe is YAML with four sections (model, method, data, train) plus infer. It is validated
with pydantic: an unknown key or a wrong type is a UserError naming the key. Command-line
overrides are dotted `section.key=value` pairs whose value is parsed as YAML (`train.lr=3e-5`,
`method.target_modules=[q_proj,v_proj]`). RUN_DIR/recipe.yaml holds the fully resolved recipe,
so a run can be reproduced from that file alone.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pefomed.errors import UserError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class TinyConfig(_Section):
    """Sizes of the built-in tiny LLaVA (vision CLIP + Llama), built deterministically in code."""

    image_size: int = 32
    patch_size: int = 4  # 64 image tokens: small patches keep a small bright finding inside whole patches
    vision_hidden: int = 64
    vision_layers: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    heads: int = 4
    vocab_size: int = 512
    seed: int = 0


class ComposedConfig(_Section):
    """The PeFoMed / MiniGPT-v2 architecture assembled from parts (model.kind: composed)."""

    vision_name_or_path: Optional[str] = Field(None, description="a transformers vision encoder (CLIP, SigLIP, EVA-style ViT)")
    llm_name_or_path: Optional[str] = Field(None, description="any transformers causal LM")
    merge_tokens: int = Field(4, gt=0, description="adjacent visual tokens concatenated (4 in PeFoMed)")
    vision_feature_layer: Optional[int] = Field(
        None, description="hidden-state index to take patch tokens from; None = the encoder's final output "
                          "(for BLIP-2's EVA ViT-g that includes the final LayerNorm, MiniGPT-v2's ln_vision)")
    image_size: Optional[int] = Field(None, gt=0, description="resize images to this square size (448 in PeFoMed); "
                                                              "None = the image processor's own size")
    image_token: str = Field("<ImageHere>", min_length=1, description="placeholder expanded into the image's tokens")
    image_prompt: str = Field("<Img><ImageHere></Img>", description="text put in the prompt for each image")
    prompt_template: str = Field("[INST] {content} [/INST]",
                                 description="one user turn; {content} = image prompts then the instruction")


class ModelSection(_Section):
    kind: Literal["tiny", "hf", "composed"] = "tiny"
    name_or_path: Optional[str] = Field(None, description="hub id or local folder (kind=hf)")
    tiny: TinyConfig = TinyConfig()
    composed: ComposedConfig = ComposedConfig()
    freeze_vision: bool = True
    trust_remote_code: bool = False


class MethodSection(_Section):
    name: Literal["lora", "dora", "rslora", "ia3", "prefix", "prompt", "projector", "full"] = "lora"
    r: int = Field(64, gt=0)
    alpha: float = 16
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]
    vision_lora: bool = False  # LoRA on the vision tower is opt-in
    train_projector: bool = True
    num_virtual_tokens: int = Field(20, gt=0)  # prefix / prompt tuning
    full_parts: list[Literal["vision", "projector", "llm"]] = ["projector", "llm"]  # method=full


class DataSection(_Section):
    dir: Optional[str] = Field(None, description="DATA_DIR written by `pefomed prepare` (or --data)")
    train_split: str = "train"
    val_split: Optional[str] = None
    # one template, a list (pool), {closed: [...], open: [...]}, or "pool:NAME" (pefomed.data.templates)
    vqa_template: Union[str, list[str], dict[str, list[str]]] = "{question}"
    report_prompt: Union[str, list[str]] = "Describe the findings of this image."
    template_seed: int = 0  # picks each sample's template from a pool

    @model_validator(mode="after")
    def _templates_are_valid(self):
        from pefomed.data.templates import check

        check(self.vqa_template, "data.vqa_template", needs_question=True)
        check(self.report_prompt, "data.report_prompt", needs_question=False)
        return self
    max_length: int = Field(1024, gt=8)


class TrainSection(_Section):
    epochs: float = Field(1, gt=0)
    max_steps: Optional[int] = Field(None, gt=0)
    batch_size: int = Field(4, gt=0, description="micro batch per process")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    warmup_start_lr: float = Field(0.0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    scheduler: Literal["cosine", "constant", "linear"] = "cosine"
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: Optional[float] = 1.0
    seed: int = 0
    deepspeed: str = Field("zero2", description="zero0|zero2|zero3|zero3_offload or a JSON file")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    log_every: int = Field(1, gt=0)
    save_every: Optional[int] = Field(None, gt=0, description="checkpoint every N optimizer steps (and at the end)")
    keep_checkpoints: int = Field(2, gt=0)
    eval_every: Optional[int] = Field(None, gt=0, description="evaluate on data.val_split every N steps (and at the end)")
    eval_max_samples: Optional[int] = Field(None, gt=0, description="evaluate on the first N val samples only")
    select_metric: Literal["auto", "vqa_accuracy", "bleu4_cider"] = "auto"
    init_from: Optional[str] = Field(None, description="a RUN_DIR whose adapter/weights start this run (two-stage training)")
    tensorboard: bool = True  # log to RUN_DIR/tensorboard when the tensorboard package is installed


class InferSection(_Section):
    batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    num_beams: int = Field(1, gt=0)


class Recipe(_Section):
    model: ModelSection = ModelSection()
    method: MethodSection = MethodSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    infer: InferSection = InferSection()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown recipe key '{key}'")
        else:
            lines.append(f"recipe key '{key}': {item['msg']} (got {item.get('input')!r})")
    return f"{source}: " + "; ".join(lines)


def _set_dotted(tree: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"{source}: '{dotted}': '{part}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(pairs: list[str]) -> dict:
    tree: dict = {}
    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise UserError(f"override {pair!r}: expected section.key=value")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise UserError(f"override {pair!r}: value is not valid YAML ({err})") from None
        _set_dotted(tree, key.strip(), value, "override")
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def builtin_recipe_path(name: str) -> Path:
    """A recipe shipped with the package (recipes/NAME.yaml), e.g. 'tiny-demo' or 'pefomed-paper/stage2-slake'."""
    path = Path(str(resources.files("pefomed.recipes") / f"{name}.yaml"))
    if not path.is_file():
        raise UserError(f"no built-in recipe named {name!r}")
    return path


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or a built-in name), apply dotted overrides, validate."""
    path = Path(path)
    if not path.exists() and path.suffix == "":  # a built-in name: tiny-demo, pefomed-paper/stage2-vqa-rad
        path = builtin_recipe_path(str(path))
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: malformed YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(tree, dict):
        raise UserError(f"{path}: a recipe must be a mapping of sections (model, method, data, train, infer)")
    tree = _merge(tree, parse_overrides(overrides or []))
    return validate_recipe(tree, str(path))


def validate_recipe(tree: dict, source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as err:
        raise UserError(_format_validation_error(err, source)) from None
    except UserError as err:  # raised by a section's own check, e.g. a template without {question}
        raise UserError(f"{source}: {err}") from None
