"""Recipes: the single source of truth for a run.

A recipe is YAML with four sections (model, method, data, train) plus infer. It is validated
with pydantic: an unknown key or a wrong type is a UserError naming the key. Command-line
overrides are dotted `section.key=value` pairs whose value is parsed as YAML (`train.lr=3e-5`,
`method.target_modules=[q_proj,v_proj]`). RUN_DIR/recipe.yaml holds the fully resolved recipe,
so a run can be reproduced from that file alone.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from pefomed.errors import UserError
from pefomed.io import check_unicode, clip, short
from pefomed.methods import QUANTIZABLE_METHODS, MethodName


# Bounds shared by the recipe, `pefomed infer` and `pefomed study` (one place, so they agree).
# Each is far beyond any real setting; it exists so that a typo (an extra digit, 1e308) is one
# message naming the key instead of an allocation of terabytes or a run that never ends.
MAX_STEPS = 10**9  # optimizer steps and step intervals: beyond any fine-tune, and exact in int64 and JSON
TRAIN_SEED_MAX = 2**32 - 1  # train.seed reaches numpy.random.seed, which takes 0 .. 2**32 - 1
SEED_MAX = 2**63 - 1  # other seeds feed hashes or torch.manual_seed: a signed 64-bit value
MAX_BATCH = 4096  # samples in one (micro-)batch: past any GPU's memory for a vision-language model
MAX_TOKENS = 1 << 20  # tokens of a sequence: past every open model's context window
MAX_WORKERS = 64  # worker processes: more than the cores of any one machine a run would use
MAX_IMAGE_SIDE = 4096  # pixels on a side the model resizes to: 4096^2 RGB floats are already 200 MB per image
MAX_SEQUENCES = 64  # beams / answers per question: each multiplies the batch's memory
MAX_LR = 10.0  # a learning rate above 10 diverges at the first step, with any optimizer and model


def _scalar_kinds(annotation: Any) -> set[str]:
    """The kinds of plain value ("number", "bool", "str") a field's annotation takes, looking inside
    Optional / Union / Annotated / tuple / list / Literal (a nested section takes none of them)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_kinds(get_args(annotation)[0])
    if origin is Literal:
        return {"bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else "str"
                for v in get_args(annotation)}
    args = get_args(annotation)
    if not args:
        return ({"bool"} if annotation is bool else {"number"} if annotation in (int, float)
                else {"str"} if annotation is str else set())
    return set().union(*(_scalar_kinds(a) for a in args if a is not type(None) and a is not Ellipsis))


def _plain_value_problem(value: Any, annotation: Any) -> str | None:
    """Why `value` must not be coerced to a field of `annotation`, or None. pydantic's lax mode
    reads true as 1, "0.002" as 0.002 and 1 as true: `train.lr=true` would train at lr 1.0 and a
    quoted "8" would pass for a number. Only a value of the field's own kind is accepted."""
    kinds = _scalar_kinds(annotation)
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, bool):
            if "number" in kinds and "bool" not in kinds:
                return "expected a number, got true/false"
        elif isinstance(item, (int, float)):
            if "bool" in kinds and not kinds & {"number", "str"}:
                return f"expected true or false, got {item!r}"
        elif isinstance(item, str):
            if "str" not in kinds and kinds & {"number", "bool"}:
                what = "a number" if "number" in kinds else "true or false"
                return f"expected {what}, got the string {short(item, 40)} (write it without quotes)"
    return None


class StrictFields(BaseModel):
    """No coercion between kinds: a number is written as a number, true/false as true/false."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name) if info.field_name else None
        if field is not None:
            problem = _plain_value_problem(value, field.annotation)
            if problem:
                raise ValueError(problem)
        return value


class _Section(StrictFields):
    # allow_inf_nan=False: `train.lr=.inf` or `train.epochs=.nan` is a mistake, never a value
    # to train with (it used to run and log NaN).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=(), allow_inf_nan=False)


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
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="attention kernel of every part: sdpa (torch's fused kernel), eager (the reference "
                            "maths; Gemma 3 / MedGemma train stably with it), flash_attention_2 (needs the "
                            "flash-attn package and a CUDA GPU)")


class MethodSection(_Section):
    name: MethodName = Field("lora", description="the tuning method (pefomed.methods.METHODS)")
    r: int = Field(64, gt=0)
    alpha: float = 16
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]
    vision_lora: bool = False  # LoRA on the vision tower is opt-in
    train_projector: bool = True
    num_virtual_tokens: int = Field(20, gt=0)  # prefix / prompt tuning
    full_parts: list[Literal["vision", "projector", "llm"]] = ["projector", "llm"]  # method=full
    quantize: Optional[Literal["4bit"]] = Field(
        None, description="QLoRA: hold the frozen LLM in 4-bit NF4 (bitsandbytes, double quantisation) under a "
                          "LoRA-family method; the adapter and projector train in full precision")

    @model_validator(mode="after")
    def _quantize_needs_lora(self):
        # the 4-bit weights are frozen: only an adapter over them can train (checked here, before
        # any model is loaded)
        if self.quantize and self.name not in QUANTIZABLE_METHODS:
            raise ValueError(f"method.quantize={self.quantize} (QLoRA) needs method.name "
                             f"{' or '.join(QUANTIZABLE_METHODS)}, not {self.name}")
        return self


class MixSource(_Section):
    """One DATA_DIR of a training mixture (data.mix)."""

    dir: str = Field(description="a DATA_DIR written by `pefomed prepare`")
    ratio: float = Field(gt=0, description="sampling weight; a draw comes from this source with probability "
                                           "ratio / (sum of ratios)")
    name: Optional[str] = Field(None, min_length=1, description="what logs and evaluation call it (default: the "
                                                                "folder name)")


class DataSection(_Section):
    dir: Optional[str] = Field(None, description="DATA_DIR written by `pefomed prepare` (or --data)")
    mix: Optional[list[MixSource]] = Field(
        None, description="train on several DATA_DIRs drawn with these ratios (PeFoMed's stage 1), instead of data.dir")
    train_transform: Literal["resize", "random_resized_crop"] = Field(
        "resize", description="training images: the processor's deterministic resize, or MiniGPT-v2 / PeFoMed's "
                              "random-resized crop (seeded per sample and epoch) before it")
    eval_transform: Literal["deterministic", "released"] = Field(
        "deterministic", description="evaluation and inference images: the deterministic resize (the paper's "
                                     "intent), or `released`: the training transform, as PeFoMed's code ran it")
    train_split: str = "train"
    val_split: Optional[str] = None
    # one template, a list (pool), {closed: [...], open: [...]}, or "pool:NAME" (pefomed.instructions)
    vqa_template: Union[str, list[str], dict[str, list[str]]] = "{question}"
    report_prompt: Union[str, list[str]] = "Describe the findings of this image."
    template_seed: int = 0  # picks each sample's template from a pool
    system_prompt: Optional[str] = Field(
        None, min_length=1, description="a system turn before every prompt (prepended to the first user text "
                                        "when the chat template has no system role; docs/prompting.md)")

    @model_validator(mode="after")
    def _templates_are_valid(self):
        from pefomed.instructions import check

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
    scheduler: Literal["cosine", "constant", "linear", "epoch_cosine"] = "cosine"
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
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader worker processes that decode images and run the "
                                                         "processor ahead of the model (0: in the training process)")
    prefetch_batches: int = Field(2, gt=0, le=64, description="micro-batches each worker prepares ahead")
    feature_cache: bool = Field(False, description="compute the frozen vision tower's output once per image, "
                                                   "keep it under RUN_DIR, and train later epochs from it")
    length_prepass: bool = Field(True, description="before step 1, count every training sample's tokens (images "
                                                   "included), report the distribution and refuse a prompt "
                                                   "longer than data.max_length, naming it")
    epoch_steps: Optional[int] = Field(None, gt=0, description="scheduler: epoch_cosine: optimizer steps per "
                                                               "schedule epoch (MiniGPT-4's run.iters_per_epoch)")
    answer_only_logits: bool = Field(True, description="run the LM head only at positions that predict an answer "
                                                       "token (same loss and gradients, far less memory)")


    @model_validator(mode="after")
    def _epoch_cosine_needs_epoch_steps(self):
        # checked when the recipe loads, not after the model has loaded
        if self.scheduler == "epoch_cosine" and self.epoch_steps is None:
            raise ValueError("train.scheduler=epoch_cosine needs train.epoch_steps (optimizer steps per schedule "
                             "epoch, MiniGPT-4's run.iters_per_epoch)")
        return self


class InferSection(_Section):
    batch_size: int = Field(8, gt=0)
    max_new_tokens: int = Field(32, gt=0)
    num_beams: int = Field(1, gt=0)
    temperature: float = Field(0.0, ge=0, le=100, description="0: greedy; above 0: sampling at this temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (with temperature > 0)")
    repetition_penalty: float = Field(1.0, gt=0, le=100, description="above 1 discourages repeated tokens")
    seed: int = Field(0, ge=0, description="seeds sampling, batch by batch")
    num_return_sequences: int = Field(1, gt=0, le=64, description="answers per question (beams or samples); "
                                                                 "the first is the prediction, all are kept")
    stop: list[str] = Field(default_factory=list, description="stop generating at any of these strings (cut from the text)")


class Recipe(_Section):
    model: ModelSection = ModelSection()
    method: MethodSection = MethodSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    infer: InferSection = InferSection()

    @model_validator(mode="after")
    def _vision_freezing_agrees_with_the_method(self):
        """model.freeze_vision is honoured by checking it against what the method trains: a
        recipe that says one thing and trains another is refused, naming both keys."""
        method, full_vision = self.method, self.method.name == "full" and "vision" in self.method.full_parts
        if full_vision and self.model.freeze_vision:
            raise UserError("method.full_parts includes vision but model.freeze_vision is true",
                            hint="set model.freeze_vision=false to train the vision encoder")
        if not self.model.freeze_vision and not full_vision and not method.vision_lora:
            raise UserError(f"model.freeze_vision is false, but method {method.name!r} trains nothing of the vision "
                            f"encoder", hint="use method.vision_lora=true (LoRA on it), or method.name=full with "
                                             "vision in method.full_parts")
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _known_keys(loc: tuple) -> list[str]:
    """The keys the recipe section at `loc` (without its last part) accepts."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _format_validation_error(err: ValidationError, source: str, overridden: dict | None = None) -> str:
    """One line per problem; a key set on the command line is blamed on the override, not the file."""
    import difflib

    overridden = overridden or {}
    lines: list[tuple[str, bool]] = []
    blamed_override = False
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(part) for part in loc)
        node, from_override = overridden, True
        for part in loc:
            node = node.get(part) if isinstance(node, dict) and part in node else None
            if node is None:
                from_override = False
                break
        blamed_override |= from_override
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
            hint = f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""
            line = f"unknown recipe key '{short(key, 80)[1:-1]}'{hint}"
        elif item["type"] == "value_error" and isinstance(item.get("input"), dict):
            # a section's own check (a model validator): its message names the keys involved
            line = item["msg"].removeprefix("Value error, ")
        else:
            line = f"recipe key '{short(key, 80)[1:-1]}': {item['msg']} (got {short(item.get('input'), 80)})"
        lines.append((line, from_override))
    if blamed_override and all(from_override for _, from_override in lines):
        return "override: " + "; ".join(line for line, _ in lines)
    return f"{source}: " + "; ".join(line + (" (override)" if from_override else "") for line, from_override in lines)


def _set_dotted(tree: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    if not all(parts) or len(parts) > 4:
        raise UserError(f"{source}: {short(dotted, 80)} is not a section.key name")
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
            raise UserError(f"override {short(pair, 80)}: expected section.key=value")
        key, raw = pair.split("=", 1)
        where = f"override {short(key, 80)}"
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise UserError(f"{where}: value is not valid YAML ({short(str(err), 200)[1:-1]})") from None
        except RecursionError:
            raise UserError(f"{where}: value nested too deeply") from None
        check_unicode(value, where)
        _set_dotted(tree, key.strip(), value, "override")
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def builtin_recipe_exists(name: str) -> bool:
    try:
        return (resources.files("pefomed.recipes") / f"{name}.yaml").is_file()
    except (ValueError, OSError):  # a name no resource path can hold
        return False


def builtin_recipe_names() -> list[str]:
    root = Path(str(resources.files("pefomed.recipes")))
    # training recipes only (recipes/studies/ holds study files for `pefomed study`)
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
                  if p.relative_to(root).parts[0] != "studies")


def builtin_recipe_path(name: str) -> Path:
    """A recipe shipped with the package (recipes/NAME.yaml), e.g. 'tiny-demo' or 'pefomed-paper/stage2-slake'."""
    path = Path(str(resources.files("pefomed.recipes") / f"{name}.yaml"))
    if not path.is_file():
        raise UserError(f"no recipe file and no built-in recipe named {name!r}",
                        hint="built-in recipes: " + ", ".join(builtin_recipe_names()))
    return path


def read_yaml_file(path: Path, what: str) -> Any:
    """A user's YAML file (a recipe, a study) as data: UTF-8 only (UTF-16, binary and other bytes
    are named as such), yaml.safe_load (no tags that build objects), bounded nesting, valid
    Unicode; every problem is one UserError naming the file (and line)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise UserError(f"{path}: the {what} is UTF-16 or binary, not UTF-8 text", hint="save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: not UTF-8 text (byte {err.start})", hint=f"save the {what} as UTF-8") from None
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: malformed YAML ({getattr(err, 'problem', None) or short(str(err), 200)[1:-1]})") from None
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply") from None
    check_unicode(tree, str(path))
    return tree


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or a built-in name), apply dotted overrides, validate."""
    path = Path(path)
    if not path.exists() and path.suffix == "":  # a built-in name: tiny-demo, pefomed-paper/stage2-vqa-rad
        path = builtin_recipe_path(str(path))
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    tree = read_yaml_file(path, "recipe")
    if not isinstance(tree, dict):
        raise UserError(f"{path}: a recipe must be a mapping of sections (model, method, data, train, infer)")
    overridden = parse_overrides(overrides or [])
    tree = _merge(tree, overridden)
    return validate_recipe(tree, str(path), overridden)


def validate_recipe(tree: dict, source: str = "recipe", overridden: dict | None = None) -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as err:
        raise UserError(_format_validation_error(err, source, overridden)) from None
    except UserError as err:  # raised by a section's own check, e.g. a template without {question}
        raise UserError(f"{source}: {clip(str(err), 600)}") from None  # clipped: it may quote a 100 kB value
