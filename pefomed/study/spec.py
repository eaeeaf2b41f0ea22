"""STUDY.yaml: the axes of a study and the comparisons to make, validated strictly.

    name: head-to-head
    models:                      # name + source (RUN_DIR, model folder, hub id, or recipe)
      - {name: llava, source: llava-hf/llava-1.5-7b-hf}
      - {name: llava-med, source: path/to/llava-med, base: llava}
    data:                        # prepared DATA_DIRs; val_split feeds prompt selection
      - {name: vqa-rad, dir: prepared/vqa-rad, val_split: val, test_split: test}
    adaptations:
      - {name: zero-shot, kind: zero-shot, prompts: builtin:vqa}
      - {name: 3-shot, kind: few-shot, shots: 3, prompts: builtin:vqa}
      - {name: blind, kind: blind, of: zero-shot}
      - {name: shuffled, kind: ablation, of: zero-shot, image: shuffled}   # or blank, mismatched
      - {name: ft, kind: fine-tune, recipe: tiny-demo, methods: [lora, dora]}
    seeds: [0, 1, 2]
    comparisons:
      - {kind: base}                            # each model vs its base, same adaptation
      - {kind: method, reference: lora}         # each method vs lora, same model
      - {kind: adaptation, reference: zero-shot}

An unknown key or a wrong type is one UserError naming the file and the key (exit code 2).
Relative paths are relative to the study file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from pefomed.errors import UserError
from pefomed.instructions import check as check_template
from pefomed.io import clip, short
from pefomed.methods import MethodName
from pefomed.recipe import SEED_MAX, TRAIN_SEED_MAX, StrictFields, read_yaml_file

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"  # names become parts of folder names and cell ids: short


class _Strict(StrictFields):
    # StrictFields: no coercion between kinds, as in a recipe (seeds: [true] or ["0"] are refused,
    # not read as 1 and 0); allow_inf_nan=False: score.alpha=.nan is a mistake, never a level
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), frozen=True, allow_inf_nan=False)


class Candidate(_Strict):
    """One way of asking a model; every field is optional (unset = the infer default)."""

    name: Optional[str] = None
    template: Optional[str] = Field(None, description="VQA instruction; must contain {question}")
    system_prompt: Optional[str] = None
    report_prompt: Optional[str] = None
    shots_seed: Optional[int] = Field(None, ge=0, le=SEED_MAX,
                                      description="few-shot: the seed that picks the solved examples (infer's `shots_seed`)")


def _plain_path(value: Optional[str]) -> Optional[str]:
    """A path (or hub id, or recipe name) the operating system can be asked about: no NUL, at most
    4096 characters, no part over 255 bytes. Checked here so that a study file's path is an error
    naming its key, never an OSError from the first file-system call."""
    if value is None:
        return value
    if "\x00" in value or len(value) > 4096 or any(len(part.encode("utf-8", "surrogatepass")) > 255
                                                   for part in value.split("/")):
        raise ValueError("not a usable path (a NUL byte, over 4096 characters, or a part over 255 bytes)")
    return value


PathText = Annotated[str, AfterValidator(_plain_path)]


class ModelEntry(_Strict):
    name: str = Field(pattern=NAME)
    source: PathText = Field(min_length=1, description="RUN_DIR, model folder, hub id, or recipe (file or built-in name)")
    base: Optional[str] = Field(None, description="the name of the model this one was adapted from")
    train_overrides: list[str] = Field(default_factory=list,
                                       description="section.key=value pairs that make a recipe train this model "
                                                   "(default: derived from the source)")


class DataEntry(_Strict):
    name: str = Field(pattern=NAME)
    dir: PathText
    test_split: str = "test"
    val_split: Optional[str] = Field("val", description="split used for prompt selection (never the test split)")


class Adaptation(_Strict):
    name: str = Field(pattern=NAME)
    kind: Literal["zero-shot", "few-shot", "blind", "ablation", "fine-tune"]
    prompts: Optional[Union[str, list[Candidate]]] = Field(
        None, description="a pool: builtin:NAME, a key of the study's `prompts`, or a list of candidates")
    shots: Optional[int] = Field(None, gt=0, description="few-shot: solved examples before the question")
    of: Optional[str] = Field(None, description="blind: the zero-/few-shot adaptation whose model, prompt and "
                                                "shots it repeats without the image; ablation: the zero-/few-shot "
                                                "or fine-tune adaptation it repeats with an ablated image")
    image: Optional[Literal["blank", "shuffled", "mismatched"]] = Field(
        None, description="ablation: what the image slot shows (infer's `image_ablation`); shuffled and "
                          "mismatched draw with each study seed")
    recipe: Optional[PathText] = Field(None, description="fine-tune: recipe file or built-in name")
    methods: list[MethodName] = Field(default_factory=list, description="fine-tune: PEFT methods")
    overrides: list[str] = Field(default_factory=list, description="fine-tune: section.key=value recipe overrides")
    objective: Optional[Literal["sft", "grpo"]] = Field(
        None, description="fine-tune: train.objective (sft: cross-entropy on the references; grpo: reinforcement "
                          "learning from rewards, docs/grpo.md); unset: the recipe's")
    init_from: Optional[str] = Field(
        None, description="fine-tune: another fine-tune adaptation of this study; each cell starts from that "
                          "adaptation's trained run of the same model, data set, method and seed (train.init_from), "
                          "e.g. SFT then GRPO")
    grpo: dict[str, Any] = Field(default_factory=dict, description="fine-tune with objective grpo: train.grpo.* "
                                                                    "settings (num_generations, beta, ...)")
    closed_answer: Literal["generate", "rank"] = "generate"


class Selection(_Strict):
    limit: Optional[int] = Field(None, gt=0, description="evaluate candidates on a seeded subsample of N")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="seed of the subsample (infer's `limit_seed`)")
    metric: str = Field("auto", description="section/name in METRICS.json, or auto (vqa/overall; report: "
                                            "BLEU-4 + CIDEr-D, as training's selection)")


class Comparison(_Strict):
    kind: Literal["base", "method", "adaptation"]
    reference: Optional[str] = Field(None, description="method: the reference method; "
                                                       "adaptation: the reference adaptation")


class ScoreSettings(_Strict):
    # the ranges are `pefomed score`'s own (ScoreOptions.check_value, applied in _check)
    bootstrap: int = 1000
    seed: int = 0
    alpha: float = 0.05
    vqa_convention: Literal["exact", "pefomed-paper", "llava-med", "llava-med-run-eval"] = "exact"
    metrics: Optional[list[str]] = Field(None, description="section/name entries to report (default by task)")


class InferSettings(_Strict):
    batch_size: Optional[int] = Field(None, gt=0)
    max_new_tokens: Optional[int] = Field(None, gt=0)


class Study(_Strict):
    name: str = Field(pattern=NAME)
    models: Annotated[list[ModelEntry], Field(min_length=1)]
    data: Annotated[list[DataEntry], Field(min_length=1)]
    adaptations: Annotated[list[Adaptation], Field(min_length=1)]
    # each seed is a cell's train.seed (and --shots-seed): train.seed's range
    seeds: Annotated[list[Annotated[int, Field(ge=0, le=TRAIN_SEED_MAX)]], Field(min_length=1)] = [0]
    prompts: dict[str, list[Candidate]] = Field(default_factory=dict)
    selection: Selection = Selection()
    comparisons: list[Comparison] = Field(default_factory=list)
    score: ScoreSettings = ScoreSettings()
    infer: InferSettings = InferSettings()


def _key(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _format(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        # drop pydantic's union-branch labels ("str", "list[Candidate]") from the key path
        loc = [p for p in item["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "int")))]
        key = clip(_key(loc), 120)  # untrusted text: a 200 kB key must not become a 200 kB message
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif item["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            lines.append(f"key '{key}': {clip(item['msg'].removeprefix('Value error, '), 200)} "
                         f"(got {short(item.get('input'), 80)})")
    unique = list(dict.fromkeys(lines))
    more = f"; and {len(unique) - 8} more" if len(unique) > 8 else ""
    return f"{clip(source, 300)}: " + "; ".join(unique[:8]) + more


def _unique(items, what: str, source: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item.name in seen:
            raise UserError(f"{source}: key '{what}[{i}].name': {item.name!r} is used twice")
        seen.add(item.name)


# what a fine-tune adaptation's own keys set in its recipe; an override of the same recipe key is a conflict
_TRAINING_KEYS = {"objective": "train.objective", "init_from": "train.init_from", "grpo": "train.grpo"}


def _check_training(a: Adaptation, i: int, adaptations: dict, source: str) -> None:
    """A fine-tune adaptation's objective, init_from and grpo keys (what SFT, GRPO and SFT -> GRPO
    cells need), each error naming the study key."""
    from pefomed.recipe import GrpoSection

    where = f"{source}: key 'adaptations[{i}]"
    if a.grpo and a.objective != "grpo":
        objective = a.objective or "unset: the recipe's"
        raise UserError(f"{where}.grpo': GRPO settings need objective: grpo on the same adaptation (objective: "
                        f"{objective})")
    if a.grpo:
        try:  # each key as the recipe checks it; the rule across keys (some reward) waits for the whole recipe
            GrpoSection.model_validate(a.grpo)
        except ValidationError as err:
            for item in err.errors():
                if not item["loc"]:
                    continue
                key = clip(".".join(str(p) for p in item["loc"]), 120)
                if item["type"] == "extra_forbidden":
                    raise UserError(f"{where}.grpo.{key}': unknown key (train.grpo keys: "
                                    f"{', '.join(GrpoSection.model_fields)})") from None
                raise UserError(f"{where}.grpo.{key}': {clip(item['msg'].removeprefix('Value error, '), 200)} "
                                f"(got {short(item.get('input'), 80)})") from None
    for own, recipe_key in _TRAINING_KEYS.items():
        clash = [o for o in a.overrides if o.split("=", 1)[0].strip() == recipe_key
                 or o.split("=", 1)[0].strip().startswith(recipe_key + ".")]
        if getattr(a, own) and clash:
            raise UserError(f"{where}.{own}' and 'adaptations[{i}].overrides' both set {recipe_key} "
                            f"({short(clash[0], 80)}); keep one")
    if a.init_from is None:
        return
    target = adaptations.get(a.init_from)
    if target is None or target.kind != "fine-tune" or target.name == a.name:
        raise UserError(f"{where}.init_from': {a.init_from!r} is not another fine-tune adaptation of this study "
                        "(init_from names the fine-tune adaptation whose trained runs this one starts from)")
    missing = [m for m in a.methods if m not in target.methods]
    if missing:
        raise UserError(f"{where}.init_from': {a.init_from!r} trains no {missing[0]!r} run to start from (its "
                        f"methods: {', '.join(target.methods)}); a cell starts from the run of the same method")
    seen, cur = {a.name}, target
    while cur.init_from is not None:  # a chain of stages must end
        if cur.init_from in seen:
            raise UserError(f"{where}.init_from': the init_from chain of {a.name!r} loops")
        seen.add(cur.init_from)
        cur = adaptations.get(cur.init_from)
        if cur is None:  # reported at that adaptation's own key
            break


def _check(study: Study, source: str) -> None:
    """Cross-field rules pydantic cannot say per field; each message names the key."""
    _unique(study.models, "models", source)
    _unique(study.data, "data", source)
    _unique(study.adaptations, "adaptations", source)
    if len(set(study.seeds)) != len(study.seeds):
        raise UserError(f"{source}: key 'seeds': a seed is listed twice ({study.seeds})")
    models = {m.name: m for m in study.models}
    for i, m in enumerate(study.models):
        if m.base is not None and m.base not in models:
            raise UserError(f"{source}: key 'models[{i}].base': no model named {m.base!r} "
                            f"(models: {', '.join(models)})")
        seen, cur = {m.name}, m
        while cur.base is not None:  # a base chain must end
            cur = models[cur.base]
            if cur.name in seen:
                raise UserError(f"{source}: key 'models[{i}].base': the base chain of {m.name!r} loops")
            seen.add(cur.name)
    adaptations = {a.name: a for a in study.adaptations}
    for i, a in enumerate(study.adaptations):
        where = f"{source}: key 'adaptations[{i}]"
        if a.kind == "fine-tune":
            if not a.recipe:
                raise UserError(f"{where}.recipe': a fine-tune adaptation needs a recipe")
            if not a.methods:
                raise UserError(f"{where}.methods': a fine-tune adaptation needs at least one method")
            if len(set(a.methods)) != len(a.methods):
                raise UserError(f"{where}.methods': a method is listed twice")
            if a.prompts is not None:
                raise UserError(f"{where}.prompts': a fine-tuned model is asked with its training template; "
                                "prompt pools apply to zero-shot, few-shot and blind adaptations")
            _check_training(a, i, adaptations, source)
        else:
            for key in ("recipe", "overrides", "objective", "init_from", "grpo"):
                if getattr(a, key):
                    raise UserError(f"{where}.{key}': only a fine-tune adaptation takes {key!r} (this is {a.kind})")
            if a.methods:
                raise UserError(f"{where}.methods': only a fine-tune adaptation takes methods")
        if a.kind in ("blind", "ablation") and "closed_answer" in a.model_fields_set:
            # its closed-answer mode is its reference's (the plan repeats `of`'s): an own value would be ignored
            article = "an" if a.kind == "ablation" else "a"
            raise UserError(f"{where}.closed_answer': {article} {a.kind} adaptation answers closed questions as {a.of!r} "
                            f"does; set closed_answer on {a.of!r}")
        if (a.kind == "few-shot") != (a.shots is not None):
            raise UserError(f"{where}.shots': " + ("a few-shot adaptation needs shots: K" if a.kind == "few-shot"
                                                   else f"only a few-shot adaptation takes shots (this is {a.kind})"))
        if a.kind == "blind":
            if a.of is None:
                raise UserError(f"{where}.of': a blind adaptation names the zero-/few-shot adaptation it repeats "
                                "without the image (of: NAME)")
            target = adaptations.get(a.of)
            if target is None or target.kind not in ("zero-shot", "few-shot"):
                raise UserError(f"{where}.of': {a.of!r} is not a zero-shot or few-shot adaptation of this study")
            if a.prompts is not None:
                raise UserError(f"{where}.prompts': a blind adaptation uses the prompt chosen for {a.of!r}")
        elif a.kind == "ablation":
            if a.of is None:
                raise UserError(f"{where}.of': an ablation adaptation names the adaptation it repeats with an "
                                "ablated image (of: NAME)")
            target = adaptations.get(a.of)
            if target is None or target.kind not in ("zero-shot", "few-shot", "fine-tune"):
                raise UserError(f"{where}.of': {a.of!r} is not a zero-shot, few-shot or fine-tune adaptation of "
                                "this study")
            if a.image is None:
                raise UserError(f"{where}.image': an ablation adaptation says what the image slot shows "
                                "(image: blank, shuffled or mismatched)")
            if a.prompts is not None:
                raise UserError(f"{where}.prompts': an ablation adaptation uses the prompt of {a.of!r}")
        elif a.of is not None:
            raise UserError(f"{where}.of': only a blind or ablation adaptation takes 'of'")
        if a.image is not None and a.kind != "ablation":
            raise UserError(f"{where}.image': only an ablation adaptation takes 'image' (this is {a.kind})")
        if isinstance(a.prompts, str):
            name = a.prompts
            if name.startswith("builtin:"):
                from pefomed.study.pools import POOLS

                if name[len("builtin:"):] not in POOLS:
                    raise UserError(f"{where}.prompts': unknown built-in pool {name!r}; built-in pools: "
                                    + ", ".join(f"builtin:{p}" for p in sorted(POOLS)))
            elif name not in study.prompts:
                raise UserError(f"{where}.prompts': no pool {name!r} under 'prompts' "
                                f"(pools: {', '.join(study.prompts) or 'none'}; or builtin:NAME)")
        elif isinstance(a.prompts, list) and not a.prompts:
            raise UserError(f"{where}.prompts': the pool is empty")
    for name, pool in study.prompts.items():
        if not pool:
            raise UserError(f"{source}: key 'prompts.{name}': the pool is empty")
    for name, pool in [(f"prompts.{k}", v) for k, v in study.prompts.items()] + \
            [(f"adaptations[{i}].prompts", a.prompts) for i, a in enumerate(study.adaptations)
             if isinstance(a.prompts, list)]:
        for j, c in enumerate(pool):
            if c.template is not None:
                try:  # the rule infer's `template` option and the recipe's data.vqa_template follow
                    check_template(c.template, "template", needs_question=True)
                except UserError as err:
                    raise UserError(f"{source}: key '{name}[{j}].template': {err}") from None
    methods = {m for a in study.adaptations for m in a.methods}
    for i, c in enumerate(study.comparisons):
        where = f"{source}: key 'comparisons[{i}]"
        if c.kind == "base":
            if c.reference is not None:
                raise UserError(f"{where}.reference': a base comparison pairs each model with its own base")
            if not any(m.base for m in study.models):
                raise UserError(f"{where}.kind': no model names a base (models[].base)")
        elif c.kind == "method":
            if c.reference not in methods:
                raise UserError(f"{where}.reference': {c.reference!r} is not a method of a fine-tune adaptation "
                                f"(methods: {', '.join(sorted(methods)) or 'none'})")
        elif c.reference not in adaptations:
            raise UserError(f"{where}.reference': no adaptation named {c.reference!r}")
    metric = study.selection.metric
    if metric != "auto" and not re.fullmatch(r"[a-z]+/.+", metric):
        raise UserError(f"{source}: key 'selection.metric': expected auto or section/name such as vqa/overall")
    from pefomed.options.score import ScoreOptions
    from pefomed.score.specs import metric_name_problem

    # the checks `pefomed score` applies to the options every cell's score step passes it
    for key in ("bootstrap", "seed", "alpha", "vqa_convention"):
        try:
            ScoreOptions.check_value(key, getattr(study.score, key))
        except UserError as err:
            raise UserError(f"{source}: key 'score.{key}': {err}") from None
    # metric names: one the scorers never write would be a blank column (or a failed selection)
    named = [(f"score.metrics[{i}]", m) for i, m in enumerate(study.score.metrics or [])]
    named += [("selection.metric", part) for part in (metric.split("+") if metric != "auto" else [])]
    for key, name in named:
        problem = metric_name_problem(name)
        if problem:
            raise UserError(f"{source}: key '{key}': {problem}")


def parse_study(tree, source: str = "study") -> Study:
    if not isinstance(tree, dict):
        raise UserError(f"{source}: a study file is a mapping (name, models, data, adaptations, ...)")
    try:
        study = Study.model_validate(tree)
    except ValidationError as err:
        raise UserError(_format(err, source)) from None
    try:
        _check(study, source)
    except UserError as err:  # the cross-field rules quote names from the file: keep the line short
        raise UserError(clip(str(err), 1000)) from None
    return study


def load_study(path: str | Path) -> tuple[Study, Path]:
    """The validated study and the folder its relative paths are relative to."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: study file not found")
    tree = read_yaml_file(path, "study file")
    return parse_study(tree, str(path)), path.resolve().parent
