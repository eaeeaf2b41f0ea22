"""A study's plan: the grid of cells and prompt selections, each with the exact `pefomed` commands.

A *cell* is one (data set, model, adaptation, method, seed) combination: train (fine-tune only),
infer the test split, score. A *selection* evaluates a pool of prompt candidates on the validation
split for one (data set, model, adaptation[, seed]) and keeps the best (arXiv 2411.04118); the
cells that need it (the adaptation's own, and a blind or ablation adaptation repeating it) wait for it.
An ablation cell of a fine-tune adaptation infers with that fine-tune cell's trained run
(`after`: it runs once that cell is done). A fine-tune adaptation with `init_from` (SFT -> GRPO)
trains each cell from the named adaptation's cell of the same data set, model, method and seed
(train.init_from=../THAT_CELL/run; `after` that cell).

Ids are deterministic: a readable part (data.model.adaptation[.method][.sSEED]) and eight hex
digits of a hash of everything that determines the cell's output (resolved sources and data,
recipe text, overrides, prompts, seed, infer settings). Editing a study therefore never reuses a
cell computed under other settings: the edited cell gets a new id and runs anew. Score settings are
not part of the id (scoring is cheap and the report re-scores anyway).

Seeds: a fine-tune trains once per seed (train.seed); a few-shot cell draws its examples with the
seed (infer's `shots_seed`) unless every candidate of its pool fixes shots_seed; zero-shot and blind
inference is greedy and deterministic, so those cells run once whatever the seeds. An ablation
cell follows its reference, and a shuffled or mismatched one also draws its images with each seed
(infer's `image_ablation_seed`); a blank one does not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pefomed.errors import UserError
from pefomed.options.infer import InferCommand, InferOptions, PromptOptions
from pefomed.options.score import ScoreCommand, ScoreOptions
from pefomed.options.train import TrainCommand
from pefomed.study.spec import Adaptation, Candidate, ModelEntry, Study

CELLS_DIR = "cells"
SELECTIONS_DIR = "selections"
DONE = "done.json"  # written last, atomically: the unit is finished


@dataclass
class Step:
    """One `pefomed` command of a unit. `output` (relative to the unit folder) exists once it is done."""

    name: str
    argv: list[str]
    output: str


@dataclass
class Unit:
    """A cell or a selection: a folder under STUDY_DIR and the steps that fill it."""

    kind: str  # "cell" | "selection"
    id: str
    data: str
    model: str
    adaptation: str
    method: str | None
    seed: int | None
    task: str
    folder: str  # relative to STUDY_DIR
    steps: list[Step] = field(default_factory=list)
    selection: str | None = None  # cell: the selection unit whose choice it infers with
    candidates: list[dict] = field(default_factory=list)  # selection: the pool
    metric: str | None = None  # selection: the metric it maximizes
    pending: bool = False  # cell: its selection has not chosen yet, so the infer command is not final
    after: str | None = None  # cell: the cell whose trained run it infers with (an ablation of a fine-tune)
    definition: dict = field(default_factory=dict)  # what the id hashes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Unit":
        d = dict(d)
        d["steps"] = [Step(**s) for s in d["steps"]]
        return cls(**d)

    @property
    def group(self) -> tuple:
        """Cells that differ only by seed form one row of the report."""
        return (self.data, self.model, self.adaptation, self.method)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]


def resolve_source(source: str, root: Path) -> str:
    """A local path (relative to the study file) becomes absolute; a hub id or built-in recipe name stays."""
    path = Path(source).expanduser()
    path = path if path.is_absolute() else root / path
    return str(path.resolve()) if path.exists() else source


def _recipe_text(recipe: str, root: Path) -> tuple[str, str]:
    """(what to pass to `pefomed train`, the recipe's text for the id hash)."""
    from pefomed.recipe import builtin_recipe_path

    path = Path(recipe).expanduser()
    path = path if path.is_absolute() else root / path
    if path.is_file():
        return str(path.resolve()), path.read_text(encoding="utf-8")
    if Path(recipe).suffix in (".yaml", ".yml"):
        raise UserError(f"recipe {recipe!r}: file not found (relative paths are relative to the study file)")
    return recipe, builtin_recipe_path(recipe).read_text(encoding="utf-8")


def model_train_overrides(model: ModelEntry, root: Path) -> list[str]:
    """The recipe overrides that make `pefomed train RECIPE` fine-tune this model.

    A recipe source lends its whole `model` section; a RUN_DIR lends its recipe's model section and
    starts from its trained weights (train.init_from); a model folder or hub id is `kind: hf`.
    """
    if model.train_overrides:
        return list(model.train_overrides)
    from pefomed.recipe import load_recipe

    source = resolve_source(model.source, root)
    path = Path(source)
    if (path / "recipe.yaml").is_file():
        return [*_identity(load_recipe(path / "recipe.yaml").model), f"train.init_from={path}"]
    if path.is_file() or (not path.exists() and "/" not in source and not source.startswith(".")):
        # a recipe file, or a built-in recipe name such as tiny-demo
        return _identity(load_recipe(source).model)
    return ["model.kind=hf", f"model.name_or_path={source}"]


def _identity(section) -> list[str]:
    """The keys that say *which* model (not how to train it: freezing and the like stay the
    fine-tune recipe's)."""
    kind = section.kind
    if kind == "hf":
        return ["model.kind=hf", f"model.name_or_path={section.name_or_path}"]
    sub = getattr(section, kind).model_dump(mode="json")
    return [f"model.kind={kind}", f"model.{kind}={json.dumps(sub, sort_keys=True)}"]


def split_task(data_dir: Path, split: str, where: str) -> str:
    from pefomed.records import read_split

    tasks = {s.task for s in read_split(data_dir, split)}
    if len(tasks) != 1:
        raise UserError(f"{where}: split {split!r} of {data_dir} mixes tasks {sorted(tasks)}; "
                        "a study data set holds one task")
    return tasks.pop()


def pool_of(study: Study, adaptation: Adaptation) -> list[dict] | None:
    from pefomed.study.pools import builtin_pool

    spec = adaptation.prompts
    if spec is None:
        return None
    if isinstance(spec, str):
        pool = builtin_pool(spec[len("builtin:"):]) if spec.startswith("builtin:") else \
            [c.model_dump(exclude_none=True) for c in study.prompts[spec]]
    else:
        pool = [c.model_dump(exclude_none=True) for c in spec]
    out = []
    for i, c in enumerate(pool):
        c = {k: v for k, v in c.items() if v is not None}
        c.setdefault("name", f"c{i}")
        out.append(c)
    return out


def _candidate(candidate: dict | Candidate | None) -> dict:
    if isinstance(candidate, Candidate):
        return candidate.model_dump(exclude_none=True)
    return dict(candidate or {})


def prompt_options(adaptation: Adaptation, seed: int | None, candidate: dict | Candidate | None = None, *,
                   blind: bool = False, image_ablation: str | None = None,
                   image_ablation_seed: int = 0) -> PromptOptions:
    """The prompt a cell or selection asks with: the candidate's prompts, the adaptation's shots (a
    candidate's shots_seed, else the study seed) and closed-answer mode, and the image control."""
    c = _candidate(candidate)
    shots = {}
    if adaptation.kind == "few-shot":
        shots = {"shots": adaptation.shots, "shots_seed": c.get("shots_seed", seed if seed is not None else 0)}
    return PromptOptions(system_prompt=c.get("system_prompt"), template=c.get("template"),
                         closed_answer=adaptation.closed_answer, blind=blind, image_ablation=image_ablation,
                         image_ablation_seed=image_ablation_seed, **shots)


def infer_argv(source: str, data_dir: Path, split: str, out: str, options: InferOptions) -> list[str]:
    """The `pefomed infer` command of a step, spelled from infer's declared options."""
    return ["infer", *InferCommand(source=source, data=Path(data_dir), split=split, out=Path(out),
                                   options=options).to_argv()]


def selection_metric(metric: str, task: str) -> str:
    if metric != "auto":
        return metric
    return "vqa/overall" if task == "vqa" else "report/BLEU-4+report/CIDEr-D"


def _seed_dependent(study: Study, adaptation: Adaptation) -> bool:
    if adaptation.kind == "fine-tune":
        return True
    if adaptation.kind in ("blind", "ablation"):
        if adaptation.kind == "ablation" and adaptation.image != "blank":
            return True  # the seed draws who is shown which image
        return _seed_dependent(study, next(a for a in study.adaptations if a.name == adaptation.of))
    if adaptation.kind == "few-shot":
        pool = pool_of(study, adaptation)
        return not pool or not all("shots_seed" in c for c in pool)
    return False


def score_argv(pred: str, out: str, settings: ScoreOptions) -> list[str]:
    """The `pefomed score` command of a step, spelled from score's declared options."""
    return ["score", *ScoreCommand(predictions=[Path(pred)], out=Path(out), settings=settings).to_argv()]


def cell_score_settings(study: Study) -> ScoreOptions:
    """What a cell's score step computes: the study's bootstrap, seed, alpha and VQA convention."""
    s = study.score
    return ScoreOptions(bootstrap=s.bootstrap, seed=s.seed, alpha=s.alpha, vqa_convention=s.vqa_convention)


class Planner:
    def __init__(self, study: Study, root: Path, study_dir: Path | None = None):
        self.study, self.root, self.study_dir = study, root, study_dir
        self.models = {m.name: m for m in study.models}
        self.adaptations = {a.name: a for a in study.adaptations}
        self.selections: dict[tuple, Unit] = {}
        self.cells: list[Unit] = []
        self._recipes_checked: set[tuple] = set()

    def _infer_options(self, prompting: PromptOptions, candidate: dict | Candidate | None = None,
                       selection: bool = False) -> InferOptions:
        """A step's infer options: the study's infer settings, the candidate's report prompt, the
        prompting, and for a selection its seeded subsample."""
        sel = self.study.selection
        limit = {"limit": sel.limit, "limit_seed": sel.seed} if selection and sel.limit else {}
        return InferOptions(batch_size=self.study.infer.batch_size or None,
                            max_new_tokens=self.study.infer.max_new_tokens or None,
                            report_prompt=_candidate(candidate).get("report_prompt"), prompting=prompting, **limit)

    def _selection(self, data, data_dir: Path, model: ModelEntry, a: Adaptation, seed: int | None,
                   task: str) -> Unit | None:
        pool = pool_of(self.study, a)
        if pool is None:
            return None
        key = (data.name, model.name, a.name, seed)
        if key in self.selections:
            return self.selections[key]
        if data.val_split is None or data.val_split == data.test_split:
            raise UserError(f"data set {data.name!r}: prompt selection for adaptation {a.name!r} needs a validation "
                            f"split other than the test split (data[].val_split; got {data.val_split!r})")
        split_task(data_dir, data.val_split, f"data set {data.name!r} (val_split)")
        sel = self.study.selection
        source = resolve_source(model.source, self.root)
        definition = {"source": source, "data": str(data_dir), "split": data.val_split, "kind": a.kind,
                      "shots": a.shots, "closed_answer": a.closed_answer, "seed": seed, "pool": pool,
                      "limit": sel.limit, "limit_seed": sel.seed, "infer": self.study.infer.model_dump()}
        readable = ".".join([data.name, model.name, a.name] + ([f"s{seed}"] if seed is not None else []))
        unit = Unit("selection", f"{readable}-{_digest(definition)}", data.name, model.name, a.name, None, seed, task,
                    "", candidates=pool, metric=selection_metric(sel.metric, task), definition=definition)
        unit.folder = f"{SELECTIONS_DIR}/{unit.id}"
        for i, c in enumerate(pool):
            pred = f"c{i}/pred.jsonl"
            options = self._infer_options(prompt_options(a, seed, c), c, selection=True)
            unit.steps.append(Step(f"infer c{i}", infer_argv(source, data_dir, data.val_split, pred, options), pred))
            # selection needs values, not intervals
            values_only = ScoreOptions(bootstrap=0, vqa_convention=self.study.score.vqa_convention)
            unit.steps.append(Step(f"score c{i}", score_argv(pred, f"c{i}/metrics.json", values_only),
                                   f"c{i}/metrics.json"))
        self.selections[key] = unit
        return unit

    def _check_sources(self) -> None:
        """Each model source as `pefomed infer` will read it (pefomed.models.source.resolve_source):
        a missing path, a RUN_DIR without trained weights or a folder that is no model is refused
        now, naming the model, not when its first cell runs."""
        from pefomed.models.source import resolve_source as read_source

        for i, model in enumerate(self.study.models):
            try:
                read_source(resolve_source(model.source, self.root))
            except UserError as err:
                raise UserError(f"model {model.name!r} (models[{i}].source): {err}") from None

    def _check_infer_options(self) -> None:
        """The options the cells' and selections' `pefomed infer` steps will pass, built now by the
        same functions and so checked by infer's own declarations: a dry run refuses what the run would."""
        study = self.study
        try:  # the settings every infer step passes (infer.*, and selection.limit / seed for selections)
            self._infer_options(PromptOptions(), selection=True)
        except UserError as err:
            raise UserError(f"study keys infer / selection: `pefomed infer` would refuse them: {err}") from None
        for i, a in enumerate(study.adaptations):
            pool = pool_of(study, a) or [{}]  # no pool: the recipe's own prompt
            for c in pool:
                # a few-shot cell draws with its candidate's shots_seed, else with each study seed
                seeds = list(study.seeds) if a.kind == "few-shot" and "shots_seed" not in c else [None]
                for seed in seeds:
                    try:
                        self._infer_options(prompt_options(a, seed, c, image_ablation=a.image), c, selection=True)
                    except UserError as err:
                        candidate = f", prompt candidate {c['name']!r}" if c else ""
                        raise UserError(f"adaptation {a.name!r} (adaptations[{i}]{candidate}): `pefomed infer` "
                                        f"would refuse its options: {err}") from None

    def plan(self) -> tuple[list[Unit], list[Unit]]:
        study = self.study
        self._check_sources()
        self._check_infer_options()
        for data in study.data:
            data_dir = Path(resolve_source(data.dir, self.root))
            if not data_dir.is_dir():
                raise UserError(f"data set {data.name!r}: {data.dir} is not a folder (a DATA_DIR from `pefomed prepare`)")
            task = split_task(data_dir, data.test_split, f"data set {data.name!r} (test_split)")
            for model in study.models:
                source = resolve_source(model.source, self.root)
                # ablations last: one of a fine-tune infers with that cell's run, so it needs its id; a
                # fine-tune that starts from another's runs (init_from) after that one, for the same reason
                for a in sorted(study.adaptations, key=lambda a: (a.kind == "ablation", self._stage(a))):
                    seeds = list(study.seeds) if _seed_dependent(study, a) else [None]
                    methods = self.adaptations[a.of].methods if a.kind == "ablation" else a.methods
                    for method in (methods or [None]):
                        for seed in seeds:
                            self._cell(data, data_dir, task, model, source, a, method, seed)
        return list(self.selections.values()), self.cells

    def _stage(self, a: Adaptation) -> int:
        """How many fine-tune stages come before `a`'s (0 without init_from)."""
        return 0 if a.init_from is None else 1 + self._stage(self.adaptations[a.init_from])

    def _trained_cell(self, data, model, adaptation: str, method, seed) -> Unit:
        """The fine-tune cell of `adaptation` with this data set, model, method and seed (planned already)."""
        return next(c for c in self.cells if (c.data, c.model, c.adaptation, c.method, c.seed)
                    == (data.name, model.name, adaptation, method, seed))

    @staticmethod
    def _objective_overrides(a: Adaptation) -> list[str]:
        """The recipe overrides of a fine-tune adaptation's own `objective` and `grpo` keys."""
        out = [f"train.objective={a.objective}"] if a.objective else []
        # JSON scalars read back as the same YAML values (a string quoted, 1e-06 a number)
        return out + [f"train.grpo.{key}={json.dumps(value)}" for key, value in a.grpo.items()]

    def _check_recipe(self, recipe_arg: str, overrides: list[str], a: Adaptation, method, seed) -> None:
        """The recipe this cell's `pefomed train` will load, loaded now by the same function
        (pefomed.recipe.load_recipe): a bad or unknown override is refused before anything runs."""
        from pefomed.recipe import load_recipe

        key = (recipe_arg, tuple(overrides))
        if key in self._recipes_checked:
            return
        try:
            recipe = load_recipe(recipe_arg, overrides)
            if recipe.train.objective == "grpo":  # what GRPO refuses before a model loads
                from pefomed.train.grpo_step import check_recipe

                check_recipe(recipe)
        except UserError as err:
            i = self.study.adaptations.index(a)
            keys = " / ".join(["recipe", "overrides"] + [k for k in ("objective", "grpo") if getattr(a, k)])
            raise UserError(f"adaptation {a.name!r} (adaptations[{i}].{keys}, method {method}, seed "
                            f"{seed}): `pefomed train` would refuse its recipe: {err}") from None
        self._recipes_checked.add(key)

    def _cell(self, data, data_dir, task, model, source, a, method, seed) -> None:
        # a blind or ablation cell repeats its reference adaptation (model, prompt choice, shots, closed
        # answers); the reference's own seed picks its prompt and shots (None when it has no seeds)
        chooser = self.adaptations[a.of] if a.kind in ("blind", "ablation") else a
        chooser_seed = seed if _seed_dependent(self.study, chooser) else None
        selection = (self._selection(data, data_dir, model, chooser, chooser_seed, task)
                     if chooser.kind != "fine-tune" else None)
        definition = {"source": source, "data": str(data_dir), "split": data.test_split, "kind": a.kind,
                      "shots": chooser.shots, "closed_answer": chooser.closed_answer, "seed": seed, "method": method,
                      "selection": selection.id if selection else None, "infer": self.study.infer.model_dump()}
        steps: list[Step] = []
        infer_source = source
        after = None
        image_control: dict = {"blind": a.kind == "blind"}
        if a.kind == "ablation":
            image_control = {"image_ablation": a.image}
            if seed is not None and a.image != "blank":  # a blank image draws nothing
                image_control["image_ablation_seed"] = seed
            definition.update(image=a.image, of=a.of)
            if chooser.kind == "fine-tune":  # that cell's trained run, from this cell's folder
                reference = self._trained_cell(data, model, chooser.name, method, seed)
                after = reference.id
                infer_source = f"../{reference.id}/run"
                definition["reference_cell"] = reference.id
        if a.kind == "fine-tune":
            recipe_arg, recipe_text = _recipe_text(a.recipe, self.root)
            train_over = model_train_overrides(model, self.root)
            start: list[str] = []
            if a.init_from is not None:  # SFT -> GRPO: the earlier stage's run of this seed, once it is done
                first = self._trained_cell(data, model, a.init_from, method, seed)
                after = first.id
                start = [f"train.init_from=../{first.id}/run"]  # from this cell's folder, as an ablation's source
                definition["init_from_cell"] = first.id
            overrides = [*train_over, *a.overrides, *self._objective_overrides(a), *start, f"method.name={method}",
                         f"train.seed={seed}"]
            self._check_recipe(recipe_arg, overrides, a, method, seed)
            definition.update(recipe=recipe_text, overrides=overrides)
            train = TrainCommand(recipe=recipe_arg, overrides=overrides, data=Path(data_dir), out=Path("run"))
            steps.append(Step("train", ["train", *train.to_argv()], "run/last.json"))
            infer_source = "run"
        readable = ".".join([data.name, model.name, a.name] + ([method] if method else [])
                            + ([f"s{seed}"] if seed is not None else []))
        cell_id = f"{readable}-{_digest(definition)}"
        pending = False
        placeholder: list[str] = []
        candidate = None
        if selection is not None:
            choice = read_choice(self.study_dir, selection) if self.study_dir is not None else None
            if choice is None:
                pending = True
                placeholder = [f"<the prompt chosen in {selection.folder}/selection.json>"]
            else:
                candidate = choice
        options = self._infer_options(prompt_options(chooser, chooser_seed, candidate, **image_control), candidate)
        infer_step = [*infer_argv(infer_source, data_dir, data.test_split, "pred.jsonl", options), *placeholder]
        unit = Unit("cell", cell_id, data.name, model.name, a.name, method, seed, task, f"{CELLS_DIR}/{cell_id}",
                    selection=selection.id if selection else None, pending=pending, definition=definition,
                    after=after)
        steps.append(Step("infer", infer_step, "pred.jsonl"))
        steps.append(Step("score", score_argv("pred.jsonl", "metrics.json", cell_score_settings(self.study)),
                          "metrics.json"))
        unit.steps = steps
        self.cells.append(unit)


def read_choice(study_dir: Path, selection: Unit) -> dict | None:
    """The candidate a finished selection chose, or None while it is not finished."""
    from pefomed.io import read_json

    folder = Path(study_dir) / selection.folder
    if not (folder / DONE).is_file():
        return None
    return read_json(folder / "selection.json")["chosen"]["candidate"]


def plan_study(study: Study, root: Path, study_dir: Path | None = None) -> tuple[list[Unit], list[Unit]]:
    """(selections, cells) in a stable order. With `study_dir`, cells whose selection has finished
    carry the chosen prompt in their infer command; the others are `pending`."""
    return Planner(study, root, study_dir).plan()
