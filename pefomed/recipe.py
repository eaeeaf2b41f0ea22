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
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_serializer,
                      model_validator)

from pefomed.errors import UserError
from pefomed.io import check_unicode, clip, short
from pefomed.methods import QUANTIZABLE_METHODS, MethodName
from pefomed.options import command_line


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
                return "expected true or false, not a number"
        elif isinstance(item, str):
            if "str" not in kinds and kinds & {"number", "bool"}:
                what = "a number" if "number" in kinds else "true or false"
                return f"expected {what}, not a quoted string (write it without quotes)"
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


# The base of every recipe section, for the sections a model kind declares in its own module.
RecipeSection = _Section


# ---------------------------------------------------------------- model kinds' recipe keys

# A model kind (pefomed.models.kinds) is a plug-in. Its module declares the keys it adds to the
# model section (model.tiny, model.name_or_path, model.composed, ...) and registers them here when
# it is imported; pyproject.toml names each kind's module under this entry-point group. So the
# recipe knows every kind without importing pefomed.models (a later layer), and a kind from
# another package is one module plus its own entry point, with no edit to pefomed.
KIND_ENTRY_POINTS = "pefomed.model_kinds"
_KIND_KEYS: dict[str, dict[str, tuple[Any, Any]]] = {}  # kind -> {model-section key: (annotation, default)}
_declared_kinds: list[str] | None = None  # kinds the entry points gave, pefomed's first; None: not loaded yet
_kind_keys_section: type[BaseModel] | None = None  # every kind's keys as one section, built on first use


def register_kind_keys(kind: str, keys: dict[str, tuple[Any, Any]]) -> None:
    """Model kind `kind` exists and adds `keys` to the model section: each a pydantic field as
    `pydantic.create_model` takes it, (annotation, default or Field(...))."""
    global _kind_keys_section
    if kind in _KIND_KEYS:
        raise ValueError(f"model kind {kind!r} registered twice")
    taken = set(ModelSection.model_fields).union(*_KIND_KEYS.values())
    if set(keys) & taken:
        raise ValueError(f"model kind {kind!r}: model section key(s) {sorted(set(keys) & taken)} already taken")
    _KIND_KEYS[kind] = dict(keys)
    _kind_keys_section = None


def _load_kind_plugins() -> list[str]:
    global _declared_kinds
    if _declared_kinds is not None:
        return _declared_kinds
    from importlib.metadata import entry_points

    _declared_kinds = []  # set first: a kind module that loads a recipe while it imports sees the kinds so far
    # pefomed's own first (its list gives their order), then other packages' in sys.path order
    found = sorted(entry_points(group=KIND_ENTRY_POINTS), key=lambda ep: getattr(ep.dist, "name", "") != "pefomed")
    if not any(getattr(ep.dist, "name", "") == "pefomed" for ep in found):
        raise UserError(f"pefomed's model kinds are not installed (entry points {KIND_ENTRY_POINTS!r}): the "
                        f"package's metadata predates them", hint="reinstall pefomed: pip install -e .")
    for ep in found:
        loaded = ep.load()  # a ModelKind or a list of them: importing their module registered them
        for kind in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
            name = getattr(kind, "name", None)
            if name not in _KIND_KEYS:
                raise RuntimeError(f"entry point {ep.name} = {ep.value} (group {KIND_ENTRY_POINTS}) gives "
                                   f"{kind!r}, not a registered model kind (pefomed.models.kinds.register)")
            if name not in _declared_kinds:  # (a distribution found twice on sys.path gives it twice)
                _declared_kinds.append(name)
    return _declared_kinds


def model_kinds() -> list[str]:
    """Every model kind's name: the installed entry points' (pefomed's own in pyproject.toml's
    order), then kinds registered in code."""
    declared = _load_kind_plugins()
    return [*declared, *(name for name in _KIND_KEYS if name not in declared)]


def kind_keys() -> type[BaseModel]:
    """The keys every kind adds to the model section, as one section (its fields, their defaults)."""
    global _kind_keys_section
    names = model_kinds()
    if _kind_keys_section is None:
        from pydantic import create_model

        fields = {key: spec for name in names for key, spec in _KIND_KEYS[name].items()}
        _kind_keys_section = create_model("ModelSection", __base__=_Section, **fields)
    return _kind_keys_section


def _literal_listing(values: list[str]) -> str:
    """`values` as pydantic's Literal error lists them: 'a', 'b' or 'c'."""
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


class ModelSection(_Section):
    """The base model. `kind` picks a registered model kind; the keys each kind adds (model.tiny,
    model.name_or_path, model.composed, ...) are declared in the kind's own module
    (register_kind_keys) and kept as this section's extra keys; any other key is refused."""

    model_config = ConfigDict(**{**_Section.model_config, "extra": "allow"})

    kind: str = Field("tiny", description="which model kind builds and loads the base model (pefomed.models.kinds)")
    freeze_vision: bool = Field(True, description="the vision encoder's own weights stay frozen (checked against "
                                                  "what the method trains)")
    trust_remote_code: bool = Field(False, description="let transformers run the checkpoint's own Python code "
                                                       "(kind=hf, and the parts of kind=composed)")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="attention kernel of every part: sdpa (torch's fused kernel), eager (the reference "
                            "maths; Gemma 3 / MedGemma train stably with it), flash_attention_2 (needs the "
                            "flash-attn package and a CUDA GPU)")

    @field_validator("kind", mode="plain")
    @classmethod
    def _registered_kind(cls, value: Any) -> str:
        names = model_kinds()
        if not isinstance(value, str) or value not in names:
            # the message a Literal of the kinds gives (it was one until kinds became plug-ins)
            raise ValueError(f"Input should be {_literal_listing(names)}")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _with_kind_keys(cls, data: Any, handler):
        if not isinstance(data, dict):
            return handler(data)  # a ModelSection already, or not a mapping (pydantic says so)
        keys = kind_keys()
        own = {k: v for k, v in data.items() if k in cls.model_fields}
        theirs = {k: v for k, v in data.items() if k not in cls.model_fields}  # unknown keys are refused there
        errors, section, added = [], None, None
        try:
            section = handler(own)
        except ValidationError as err:
            errors += err.errors()
        try:
            added = keys.model_validate(theirs)
        except ValidationError as err:
            errors += err.errors()
        if errors:
            # one report in the order the section's keys are listed (kind, the kinds' keys, the
            # rest), unknown keys last, as pydantic orders the errors of one model
            order = {key: i for i, key in enumerate(fields_of(cls))}
            errors.sort(key=lambda e: order.get(e["loc"][0] if e["loc"] else "", len(order)))
            raise ValidationError.from_exception_data(cls.__name__, [
                {"type": e["type"], "loc": e["loc"], "input": e["input"], **({"ctx": e["ctx"]} if "ctx" in e else {})}
                for e in errors])
        section.__pydantic_extra__.update({key: getattr(added, key) for key in keys.model_fields})
        section.__pydantic_fields_set__.update(theirs)
        return section

    @model_serializer(mode="wrap")
    def _kind_keys_after_kind(self, handler):
        dumped = handler(self)
        order = list(fields_of(type(self)))
        return {k: dumped[k] for k in sorted(dumped, key=lambda k: order.index(k) if k in order else len(order))}


def fields_of(section: type[BaseModel]) -> dict[str, Any]:
    """Every key `section` takes, as pydantic FieldInfo: its fields, and for the model section
    `kind` first, then the keys the model kinds add, then its own others."""
    if not (isinstance(section, type) and issubclass(section, ModelSection)):
        return dict(section.model_fields)
    own = dict(section.model_fields)
    return {"kind": own.pop("kind"), **kind_keys().model_fields, **own}


class MethodSection(_Section):
    name: MethodName = Field("lora", description="the tuning method (pefomed.methods.METHODS)")
    # rank: at most 4096 (a rank above a layer's width adds nothing; no LLM layer is much wider)
    r: int = Field(64, gt=0, le=4096, description="rank of each LoRA-family adapter: the inner width of its two "
                                                  "low-rank matrices")
    # the update is scaled by alpha / r (alpha / sqrt(r) for rslora): 0 switches the adapter off and
    # a negative alpha flips its sign; 100,000 is far past any rank's usual 2 x r
    alpha: float = Field(16, gt=0, le=100_000, description="LoRA scaling: the adapter's update is multiplied by "
                                                           "alpha / r (alpha / sqrt(r) for rslora)")
    # a probability; 1 would drop every input
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout probability on each adapter's input (0: none)")
    # leaf module names (an empty list is reported when the model is known: which names exist)
    target_modules: list[Annotated[str, Field(min_length=1)]] = Field(
        ["q_proj", "v_proj"], description="leaf module names the adapter wraps, in the LLM only (and in the vision "
                                          "tower too with method.vision_lora)")
    vision_lora: bool = Field(False, description="also adapt the same module names in the vision tower (opt-in)")
    train_projector: bool = Field(True, description="the vision-to-LLM projector trains (and is saved) under every "
                                                    "adapter method")
    num_virtual_tokens: int = Field(20, gt=0, le=4096, description="prefix / prompt tuning: learnt LLM positions "
                                                                   "put in front of every input")
    full_parts: list[Literal["vision", "projector", "llm"]] = Field(
        ["projector", "llm"], description="method.name=full: the components whose weights all train")
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
        if self.name == "full" and not self.full_parts:
            raise ValueError("method.name=full with an empty method.full_parts trains nothing "
                             "(list vision, projector and/or llm)")
        return self


class MixSource(_Section):
    """One DATA_DIR of a training mixture (data.mix)."""

    dir: str = Field(min_length=1, description="a DATA_DIR written by `pefomed prepare`")
    # weights are relative; 1e6 : 1 is already a source that is never drawn, and a sum of huge
    # ratios overflows to inf (every probability NaN)
    ratio: float = Field(gt=0, le=1e6, description="sampling weight; a draw comes from this source with probability "
                                                   "ratio / (sum of ratios)")
    name: Optional[str] = Field(None, min_length=1, description="what logs and evaluation call it (default: the "
                                                                "folder name)")


class DataSection(_Section):
    dir: Optional[str] = Field(None, min_length=1, description="DATA_DIR written by `pefomed prepare` (or given "
                                                                 f"as {command_line('train', data='DATA_DIR')})")
    mix: Optional[list[MixSource]] = Field(
        None, description="train on several DATA_DIRs drawn with these ratios (PeFoMed's stage 1), instead of data.dir")
    train_transform: Literal["resize", "random_resized_crop"] = Field(
        "resize", description="training images: the processor's deterministic resize, or MiniGPT-v2 / PeFoMed's "
                              "random-resized crop (seeded per sample and epoch) before it")
    eval_transform: Literal["deterministic", "released"] = Field(
        "deterministic", description="evaluation and inference images: the deterministic resize (the paper's "
                                     "intent), or `released`: the training transform, as PeFoMed's code ran it")
    train_split: str = Field("train", min_length=1, description="the split training reads: DATA_DIR/<name>.jsonl")
    val_split: Optional[str] = Field(None, min_length=1, description="the split evaluation reads (train.eval_every); "
                                                                    "null: val")
    answer_types: Optional[list[Literal["closed", "open"]]] = Field(
        None, min_length=1, description="train (and validate, train.eval_every) on the VQA questions of these answer "
                                        "types only, e.g. [closed] (Med-R1 trains on closed questions); a question "
                                        "without answer_type is closed when its answer is yes/no (as `pefomed "
                                        "score`); null: every question")
    # one template, a list (pool), {closed: [...], open: [...]}, or "pool:NAME" (pefomed.instructions)
    vqa_template: Union[str, list[str], dict[str, list[str]]] = Field(
        "{question}", description="a VQA sample's instruction: a template with {question}, a list (a pool: one per "
                                  "sample), {closed: [...], open: [...]}, or pool:NAME")
    report_prompt: Union[str, list[str]] = Field(
        "Describe the findings of this image.", description="a report sample's instruction: a prompt, a list (a "
                                                            "pool), or pool:NAME")
    template_seed: int = Field(0, ge=0, le=SEED_MAX, description="picks each sample's template from a pool (hashed "
                                                                 "with the sample id: always the same one for it)")
    system_prompt: Optional[str] = Field(
        None, min_length=1, description="a system turn before every prompt (prepended to the first user text "
                                        "when the chat template has no system role; docs/prompting.md)")

    @model_validator(mode="after")
    def _templates_are_valid(self):
        from pefomed.instructions import check

        check(self.vqa_template, "data.vqa_template", needs_question=True)
        check(self.report_prompt, "data.report_prompt", needs_question=False)
        return self
    # at least 9 tokens: room for a prompt and an answer; at most MAX_TOKENS (past any context window)
    max_length: int = Field(1024, gt=8, le=MAX_TOKENS, description="tokens per sample, image tokens included: a "
                                                                   "longer answer loses its tail, a longer prompt "
                                                                   "is an error")


class GrpoSection(_Section):
    """train.objective=grpo: group relative policy optimisation with verifiable rewards (docs/grpo.md)."""

    num_generations: int = Field(4, ge=2, le=MAX_SEQUENCES, description="G: answers sampled per question (a group; "
                                                                       "advantages are relative within it)")
    temperature: float = Field(1.0, gt=0, le=100, description="sampling temperature of the rollouts (also divides "
                                                              "the logits the ratio is computed from)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling of the rollouts")
    max_new_tokens: int = Field(32, gt=0, le=MAX_TOKENS, description="longest sampled answer (Dr. GRPO's constant "
                                                                      "max_completion_length)")
    loss: Literal["grpo", "dapo", "dr_grpo"] = Field("grpo", description="grpo: mean of each answer's token mean "
                                                     "(DeepSeekMath); dapo: token-level mean over the batch "
                                                     "(DAPO); dr_grpo: no std in the advantage, sum over tokens / "
                                                     "max_new_tokens (Dr. GRPO)")
    beta: float = Field(0.04, ge=0, le=100, description="weight of the k3 KL penalty to the reference (the base "
                                                        "model with the adapter disabled); 0: no reference pass")
    epsilon: float = Field(0.2, gt=0, lt=1, description="lower clip of the ratio: 1 - epsilon")
    epsilon_high: Optional[float] = Field(None, gt=0, le=10, description="upper clip 1 + epsilon_high (DAPO's "
                                                                         "clip-higher, 0.28); null: epsilon")
    updates_per_rollout: int = Field(1, gt=0, le=64, description="optimizer steps on each rollout (GRPO's mu); 1: "
                                                                 "on-policy, old log-probs = the current ones")
    answer_reward: float = Field(1.0, ge=0, le=1000, description="weight of the answer reward (VQA: exact match "
                                                                 "under vqa_convention; reports: ROUGE-L)")
    format_reward: float = Field(0.0, ge=0, le=1000, description="weight of the format reward: 1 when the answer "
                                                                 "is <think>...</think><answer>...</answer>")
    vqa_convention: Literal["exact", "pefomed-paper", "llava-med", "llava-med-run-eval"] = Field(
        "exact", description="how the answer reward scores a VQA answer (the conventions of `pefomed score`)")

    @model_validator(mode="after")
    def _some_reward(self):
        if self.answer_reward == 0 and self.format_reward == 0:
            raise ValueError("train.grpo.answer_reward and train.grpo.format_reward are both 0: no reward to learn from")
        return self


class TrainSection(_Section):
    # passes over the data (fractions allowed); 10,000 epochs is far past any fine-tune
    epochs: float = Field(1, gt=0, le=10_000, description="passes over the training data (fractions allowed); "
                                                          "train.max_steps wins when set")
    max_steps: Optional[int] = Field(None, gt=0, le=MAX_STEPS, description="optimizer steps to train; null: as many "
                                                                          "as train.epochs make")
    batch_size: int = Field(4, gt=0, le=MAX_BATCH, description="micro batch per process")
    grad_accum: int = Field(1, gt=0, le=MAX_BATCH, description="micro-batches per optimizer step (global batch = "
                                                               "batch_size x processes x grad_accum)")
    lr: float = Field(1e-4, gt=0, le=MAX_LR, description="peak learning rate of AdamW, reached at the end of the "
                                                         "warmup")
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS, description="optimizer steps of linear warmup from "
                                                                 "warmup_start_lr to lr; 0: none (one epoch under "
                                                                 "scheduler epoch_cosine)")
    # both rates are at most train.lr (checked below): the warmup rises to lr and the decay falls from it
    warmup_start_lr: float = Field(0.0, ge=0, le=MAX_LR, description="learning rate the warmup starts from")
    min_lr: float = Field(0.0, ge=0, le=MAX_LR, description="learning rate the decay ends at (cosine, linear, "
                                                            "epoch_cosine)")
    scheduler: Literal["cosine", "constant", "linear", "epoch_cosine"] = Field(
        "cosine", description="after the warmup: cosine or linear decay to min_lr at the last step, constant, or "
                              "epoch_cosine (MiniGPT-4 / PeFoMed's, per train.epoch_steps)")
    # AdamW's decoupled decay shrinks each matrix by lr x weight_decay per step; 10 is past any
    # published setting (0.01-0.1), and 0 turns it off
    weight_decay: float = Field(0.0, ge=0, le=10, description="AdamW's decoupled weight decay, on matrices only; "
                                                              "0: none")
    # Adam's moment decay rates: each in [0, 1) (1 never forgets, and the bias correction divides by 0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = Field(
        (0.9, 0.999), description="AdamW's decay rates of the first and second moment estimates")
    # clip the gradient norm to this; 0 or null: no clipping (DeepSpeed's gradient_clipping 0.0).
    # Any non-negative finite value is a valid threshold, so no upper bound.
    max_grad_norm: Optional[float] = Field(1.0, ge=0, description="clip the gradient norm to this; 0 or null: no "
                                                                  "clipping")
    seed: int = Field(0, ge=0, le=TRAIN_SEED_MAX, description="seeds the data order, initialisation, dropout and "
                                                              "random crops")
    # a preset name or a JSON file (checked when training starts, where the file is read)
    deepspeed: str = Field("zero2", min_length=1, description="zero0|zero2|zero3|zero3_offload or a JSON file")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="dtype the base model loads and trains in: fp32, bf16 (CPU or GPU) or fp16 (CUDA GPU "
                            "only)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in the backward pass "
                                                            "(non-reentrant): less memory, more compute")
    log_every: int = Field(1, gt=0, le=MAX_STEPS, description="a train_log.jsonl row every N optimizer steps (and "
                                                              "at the last)")
    save_every: Optional[int] = Field(None, gt=0, le=MAX_STEPS,
                                      description="checkpoint every N optimizer steps (and at the end)")
    # 0 would delete the one to resume from
    keep_checkpoints: int = Field(2, gt=0, le=1_000_000, description="resumable checkpoints kept on disk (older "
                                                                     "ones are deleted)")
    eval_every: Optional[int] = Field(None, gt=0, le=MAX_STEPS,
                                      description="evaluate on data.val_split every N steps (and at the end)")
    eval_max_samples: Optional[int] = Field(None, gt=0, le=MAX_STEPS,
                                            description="evaluate on the first N val samples only")
    select_metric: Literal["auto", "vqa_accuracy", "bleu4_cider"] = Field(
        "auto", description="the evaluation metric that picks RUN_DIR/best/; auto: VQA exact-match accuracy, or "
                            "BLEU-4 + CIDEr for reports")
    init_from: Optional[str] = Field(None, min_length=1,
                                     description="a RUN_DIR whose adapter/weights start this run (two-stage training)")
    tensorboard: bool = Field(True, description="log to RUN_DIR/tensorboard when the tensorboard package is "
                                                "installed")
    num_workers: int = Field(0, ge=0, le=MAX_WORKERS, description="DataLoader worker processes that decode images "
                                                                  "and run the processor ahead of the model (0: in "
                                                                  "the training process)")
    prefetch_batches: int = Field(2, gt=0, le=64, description="micro-batches each worker prepares ahead")
    feature_cache: bool = Field(False, description="compute the frozen vision tower's output once per image, "
                                                   "keep it under RUN_DIR, and train later epochs from it")
    length_prepass: bool = Field(True, description="before step 1, count every training sample's tokens (images "
                                                   "included), report the distribution and refuse a prompt "
                                                   "longer than data.max_length, naming it")
    epoch_steps: Optional[int] = Field(None, gt=0, le=MAX_STEPS,
                                       description="scheduler: epoch_cosine: optimizer steps per schedule epoch "
                                                   "(MiniGPT-4's run.iters_per_epoch)")
    answer_only_logits: bool = Field(True, description="run the LM head only at positions that predict an answer "
                                                       "token (same loss and gradients, far less memory)")
    loss_kernel: Literal["torch", "liger"] = Field("torch", description="torch: the LM head, then cross-entropy; "
                                                   "liger: liger-kernel's fused linear cross-entropy, which never "
                                                   "holds the logits (CUDA only; pip install 'pefomed[liger]')")
    objective: Literal["sft", "grpo"] = Field("sft", description="sft: cross-entropy on the reference answers; grpo: "
                                                                "reinforcement learning from rewards on sampled answers "
                                                                "(train.grpo)")
    grpo: GrpoSection = Field(default_factory=GrpoSection, description="the GRPO objective's settings "
                                                                       "(train.objective=grpo)")


    @model_validator(mode="after")
    def _epoch_cosine_needs_epoch_steps(self):
        # checked when the recipe loads, not after the model has loaded
        if self.scheduler == "epoch_cosine" and self.epoch_steps is None:
            raise ValueError("train.scheduler=epoch_cosine needs train.epoch_steps (optimizer steps per schedule "
                             "epoch, MiniGPT-4's run.iters_per_epoch)")
        return self

    @model_validator(mode="after")
    def _rates_stay_below_lr(self):
        # the warmup rises from warmup_start_lr to lr and the decay falls from lr to min_lr: either
        # above lr turns the schedule upside down (pefomed.train.schedule)
        for key in ("warmup_start_lr", "min_lr"):
            if getattr(self, key) > self.lr:
                raise ValueError(f"train.{key}={getattr(self, key):g} is above train.lr={self.lr:g}: the schedule "
                                 f"moves between them, so it must be at most lr")
        return self


class InferSection(_Section):
    batch_size: int = Field(8, gt=0, le=MAX_BATCH, description="questions generated for at once (per process)")
    max_new_tokens: int = Field(32, gt=0, le=MAX_TOKENS, description="longest generated answer, in tokens")
    # each beam is one more sequence in the batch's memory
    num_beams: int = Field(1, gt=0, le=MAX_SEQUENCES, description="beam search width; 1: greedy (or sampling)")
    temperature: float = Field(0.0, ge=0, le=100, description="0: greedy; above 0: sampling at this temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (with temperature > 0)")
    repetition_penalty: float = Field(1.0, gt=0, le=100, description="above 1 discourages repeated tokens")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seeds sampling, batch by batch")
    num_return_sequences: int = Field(1, gt=0, le=MAX_SEQUENCES, description="answers per question (beams or "
                                                                            "samples); the first is the "
                                                                            "prediction, all are kept")
    # an empty stop string would match at once and cut every answer to nothing; how many strings is
    # not bounded (each is one substring test per generated text)
    stop: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="stop generating at any of these strings (cut from the text)")
    answer_template: Literal["none", "think_answer"] = Field(
        "none", description="think_answer: the prediction is the text inside <answer>...</answer> (Med-R1's "
                            "reasoning template; the whole text when it has none); none: the text as generated")


class Recipe(_Section):
    # a factory: the model section's defaults include the keys of kinds registered after this module loads
    model: ModelSection = Field(default_factory=ModelSection, description="the base model")
    method: MethodSection = Field(MethodSection(), description="the tuning method and its settings")
    data: DataSection = Field(DataSection(), description="the training data and the instructions")
    train: TrainSection = Field(TrainSection(), description="the training run")
    infer: InferSection = Field(InferSection(), description="generation: pefomed infer and training's evaluation")

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
        # _Dumper quotes a string that StrictLoader would read as a number ("1e5"), so the file reads back
        return yaml.dump(self.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False)


def _known_keys(loc: tuple) -> list[str]:
    """The keys the recipe section at `loc` (without its last part) accepts."""
    model: type[BaseModel] = Recipe
    for part in loc[:-1]:
        field = fields_of(model).get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(fields_of(model))


def _line_of(loc: tuple, lines: dict) -> int | None:
    """The line of the innermost key of `loc` the file gave (a list item's, else its key's)."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _format_validation_error(err: ValidationError, source: str, overridden: dict | None = None,
                             lines: dict | None = None) -> str:
    """One line per problem; a key set on the command line is blamed on the override, not the file
    (whose problems say their line, from `lines`: StrictLoader.key_lines)."""
    import difflib

    overridden, lines = overridden or {}, lines or {}
    problems: list[tuple[str, bool]] = []
    blamed_override = False
    for item in err.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(part) for part in loc)
        node, from_override = overridden, True
        for part in loc:
            if isinstance(node, dict):
                if part not in node:
                    from_override = False
                    break
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:  # the override gave this whole value (`train.betas=[2, 3]`: its item is at fault)
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
            line = (f"recipe key '{short(key, 80)[1:-1]}': {item['msg'].removeprefix('Value error, ')} "
                    f"(got {short(item.get('input'), 80)})")
        at = None if from_override else _line_of(loc, lines)
        problems.append((line + (f" (line {at})" if at else ""), from_override))
    if blamed_override and all(from_override for _, from_override in problems):
        return "override: " + "; ".join(line for line, _ in problems)
    return f"{source}: " + "; ".join(line + (" (override)" if from_override else "")
                                     for line, from_override in problems)


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
            # the recipe file's own loader: 3e-5 is a number, a key given twice is refused
            value = load_yaml(raw) if raw != "" else None
        except DuplicateKeyError as err:  # (its line is the value's own, 1: not worth saying)
            raise UserError(f"{where}: duplicate key {err.key!r} in the value") from None
        except yaml.YAMLError as err:
            raise UserError(f"{where}: value is not valid YAML ({short(str(err), 200)[1:-1]})") from None
        except RecursionError:
            raise UserError(f"{where}: value nested too deeply") from None
        check_unicode(value, where)
        _set_dotted(tree, key.strip(), value, "override")
    return tree


def _check_sections(tree: dict, source: str, lines: dict, model: type[BaseModel] = None, prefix: tuple = ()) -> None:
    """Every section the file gives (model, train, model.tiny, ...) is a mapping of keys. Checked
    before the overrides merge in, which would otherwise replace a malformed `train:` (a list, a
    number, nothing) with the override's keys and hide it."""
    for name, field in fields_of(model or Recipe).items():
        annotation = field.annotation
        if name not in tree or not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        value, path = tree[name], (*prefix, name)
        if not isinstance(value, dict):
            line = lines.get(path)
            what = "nothing" if value is None else f"a {type(value).__name__}: {short(value, 60)}"
            raise UserError(f"{source}{f':{line}' if line else ''}: recipe key '{'.'.join(path)}' is a section: a "
                            f"mapping of its keys (key: value lines indented under it), not {what}")
        _check_sections(value, source, lines, annotation, path)


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


# ---------------------------------------------------------------- strict YAML

_MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2 floats without a dot or without a signed exponent (3e-5, 1E6, 2.5e3): PyYAML follows
# YAML 1.1 and reads these as strings, which a number field then refuses (no string -> number
# coercion). So `lr: 3e-5` in a file and `train.lr=3e-5` on the command line stay numbers, as
# they always were; quoted ("3e-5") they are strings.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
_FLOAT_FIRST = list("-+0123456789.")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one mapping (`problem` names it and the line of the first)."""


def _dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


class StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader (no tags that build objects) that refuses a key given twice in one mapping
    (SafeLoader keeps the last silently: a second `lr:` further down wins without a word) and
    reads YAML 1.2 exponent floats as numbers. `key_lines` maps each key path of the document
    (("train", "lr"), ("data", "mix", 0)) to its 1-based line, for messages about its value."""

    def __init__(self, stream):
        super().__init__(stream)
        self.key_lines: dict[tuple, int] = {}

    def construct_document(self, node):
        self._check_keys(node)
        return super().construct_document(node)

    def _check_keys(self, root) -> None:
        seen: set[int] = set()
        stack = [(root, ())]
        while stack:  # iterative: a deeply nested document must not exhaust the Python stack here
            node, path = stack.pop()
            if id(node) in seen:  # an alias: checked where its anchor is (and no loop for `&a [*a]`)
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                first: dict = {}
                for key_node, value_node in node.value:
                    if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                        stack.append((value_node, path))  # `<<: *base` keys may be overridden by design
                        continue
                    ident, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                    key_path = (*path, key_node.value)
                    if ident in first:
                        error = DuplicateKeyError(None, None, f"duplicate key {clip(_dotted(key_path), 120)!r} "
                                                              f"(first given on line {first[ident]})",
                                                  key_node.start_mark)
                        error.key = clip(_dotted(key_path), 120)
                        raise error
                    first[ident] = line
                    self.key_lines.setdefault(key_path, line)
                    stack.append((value_node, key_path))
            elif isinstance(node, yaml.SequenceNode):
                for i, item in enumerate(node.value):
                    self.key_lines.setdefault((*path, i), item.start_mark.line + 1)
                    stack.append((item, (*path, i)))


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, _FLOAT_FIRST)


class _Dumper(yaml.SafeDumper):
    """Writes what StrictLoader reads back: a string such as "1e5" is quoted."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, _FLOAT_FIRST)


def load_yaml(text: str, lines: dict | None = None) -> Any:
    """`text` as data through StrictLoader; `lines` (when given) receives its key_lines."""
    loader = StrictLoader(text)
    try:
        tree = loader.get_single_data()
        if lines is not None:
            lines.update(loader.key_lines)
        return tree
    finally:
        loader.dispose()


def read_yaml_file(path: Path, what: str, lines: dict | None = None) -> Any:
    """A user's YAML file (a recipe, a study) as data: UTF-8 only (UTF-16, binary and other bytes
    are named as such), StrictLoader (yaml.SafeLoader: no tags that build objects; a key given
    twice is refused), bounded nesting, valid Unicode, not empty; every problem is one UserError
    naming the file (and line). `lines`, when given, receives the line of each key path."""
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
        tree = load_yaml(text, lines)
    except DuplicateKeyError as err:
        raise UserError(f"{path}:{err.problem_mark.line + 1}: {err.problem}",
                        hint=f"a key may appear once per section of the {what}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"{where}: malformed YAML ({getattr(err, 'problem', None) or short(str(err), 200)[1:-1]})") from None
    except RecursionError:
        raise UserError(f"{path}: YAML nested too deeply") from None
    if tree is None:  # an empty file, or comments only: never a silent "all defaults"
        raise UserError(f"{path}: the {what} is empty")
    check_unicode(tree, str(path))
    return tree


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or a built-in name), apply dotted overrides, validate."""
    path = Path(path)
    if not path.exists() and path.suffix == "":  # a built-in name: tiny-demo, pefomed-paper/stage2-vqa-rad
        path = builtin_recipe_path(str(path))
    if not path.is_file():
        raise UserError(f"{path}: recipe file not found")
    lines: dict[tuple, int] = {}
    tree = read_yaml_file(path, "recipe", lines)
    if not isinstance(tree, dict):
        raise UserError(f"{path}: a recipe must be a mapping of sections (model, method, data, train, infer)")
    _check_sections(tree, str(path), lines)
    overridden = parse_overrides(overrides or [])
    tree = _merge(tree, overridden)
    return validate_recipe(tree, str(path), overridden, lines)


def validate_recipe(tree: dict, source: str = "recipe", overridden: dict | None = None,
                    lines: dict | None = None) -> Recipe:
    """`tree` as a Recipe, or one UserError naming `source` and each bad key (with its line in the
    file, from `lines`, where known)."""
    try:
        return Recipe.model_validate(tree)
    except ValidationError as err:
        raise UserError(_format_validation_error(err, source, overridden, lines)) from None
    except UserError as err:  # raised by a section's own check, e.g. a template without {question}
        raise UserError(f"{source}: {clip(str(err), 600)}") from None  # clipped: it may quote a 100 kB value
