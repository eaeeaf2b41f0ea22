"""What a training run reads and how long it is, fixed before its first step: the training
samples (one DATA_DIR, or the sources of a data.mix mixture), the epoch arithmetic, the batches
each process sees, and the validation samples with the metric that selects the best step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.data.collate import Collator
from pefomed.data.mixture import MixtureBatches, Source, mix_sources, quotas, sourced
from pefomed.data.train_batches import EpochPlan, TrainingBatches
from pefomed.errors import UserError
from pefomed.recipe import Recipe
from pefomed.records import read_manifest, read_split
from pefomed.train.evaluate import EvalSet, selection_metric


def check_data(recipe: Recipe) -> list[Source]:
    """The training DATA_DIR(s), checked before any process group or model exists: one source for
    data.dir (named after its folder), the entries of data.mix otherwise."""
    data = recipe.data
    if data.dir is not None and data.mix is not None:
        raise UserError("data.dir and data.mix are both set: a run trains on one DATA_DIR (data.dir or `data`) "
                        "or on the mixture in data.mix, not both", hint="remove one of them (data.mix=null or "
                                                                       "data.dir=null)")
    if data.mix is not None:
        return mix_sources(data)
    if data.dir is None:
        raise UserError("no training data: pass `data` DATA_DIR or set data.dir (or data.mix) in the recipe")
    data_dir = Path(data.dir)
    if not (data_dir / "manifest.json").is_file():
        raise UserError(f"{data_dir}: not a prepared DATA_DIR (no manifest.json); run `pefomed prepare` first")
    return [Source(name=data_dir.name, dir=data_dir, ratio=1.0)]


def of_answer_types(samples: list, answer_types: list[str] | None, where: str) -> list:
    """The samples data.answer_types keeps: VQA questions of those answer types (unknown ones
    typed as `pefomed score` types them, pefomed.metrics.vqa.answer_type_of); None keeps all."""
    if answer_types is None:
        return samples
    from pefomed.metrics.vqa import answer_type_of

    if any(s.task != "vqa" for s in samples):
        raise UserError(f"data.answer_types={answer_types} selects VQA questions; {where} holds "
                        f"{next(s.task for s in samples if s.task != 'vqa')} samples", keys=["data.answer_types"])
    kept = [s for s in samples if answer_type_of(s.answer, s.answer_type) in answer_types]
    if not kept:
        raise UserError(f"data.answer_types={answer_types} keeps none of the {len(samples)} questions of {where}",
                        keys=["data.answer_types"])
    return kept


def _in_source(index: int, source: Source, read):
    """`read()`, its UserError prefixed with the data.mix entry it concerns."""
    try:
        return read()
    except UserError as err:
        raise UserError(f"data.mix[{index}] ({source.name}): {err.args[0]}", hint=err.hint) from None


@dataclass
class Plan:
    sources: list[Source]
    samples: list[list]  # per source (one list for data.dir)
    epochs: EpochPlan
    quota: list[int] | None  # draws per mixture epoch of each source; None: a plain data.dir run
    evals: list[EvalSet]  # empty without train.eval_every

    @property
    def total_steps(self) -> int:
        return self.epochs.total_steps

    @property
    def mixed(self) -> bool:
        return self.quota is not None

    @classmethod
    def make(cls, recipe: Recipe, sources: list[Source], world: int) -> "Plan":
        if recipe.data.mix is None:
            return cls._single(recipe, sources[0], world)
        return cls._mixture(recipe, sources, world)

    @classmethod
    def _single(cls, recipe: Recipe, source: Source, world: int) -> "Plan":
        cfg, data_dir = recipe.train, source.dir
        types = recipe.data.answer_types
        samples = of_answer_types(read_split(data_dir, recipe.data.train_split), types,
                                  f"{data_dir}/{recipe.data.train_split}.jsonl")
        epochs = EpochPlan.make(len(samples), cfg.batch_size, world, cfg.grad_accum, cfg.epochs, cfg.max_steps,
                                where=f"{data_dir}/{recipe.data.train_split}.jsonl")
        evals = []
        if cfg.eval_every:
            val_split = recipe.data.val_split or "val"
            val_samples = of_answer_types(read_split(data_dir, val_split), types,
                                          f"{data_dir}/{val_split}.jsonl")[: cfg.eval_max_samples]
            evals = [EvalSet(None, data_dir, val_samples, selection_metric(val_samples, cfg.select_metric))]
        return cls([source], [samples], epochs, None, evals)

    @classmethod
    def _mixture(cls, recipe: Recipe, sources: list[Source], world: int) -> "Plan":
        cfg, split = recipe.train, recipe.data.train_split
        types = recipe.data.answer_types
        samples = [sourced(_in_source(i, s, lambda s=s: of_answer_types(read_split(s.dir, split), types,
                                                                         f"{s.dir}/{split}.jsonl")), s.name)
                   for i, s in enumerate(sources)]
        quota = quotas([len(group) for group in samples], [s.ratio for s in sources])
        for i, (source, q) in enumerate(zip(sources, quota)):
            if q == 0:
                raise UserError(f"data.mix[{i}] ({source.name}): ratio {source.ratio:g} gives it no draw in a mixture "
                                f"epoch of {sum(quota)} samples", hint=f"raise data.mix[{i}].ratio")
        epochs = EpochPlan.make(sum(quota), cfg.batch_size, world, cfg.grad_accum, cfg.epochs, cfg.max_steps,
                                where=f"the mixture (data.mix, {split} splits)")
        return cls(sources, samples, epochs, quota, cls._mixture_evals(recipe, sources) if cfg.eval_every else [])

    @staticmethod
    def _mixture_evals(recipe: Recipe, sources: list[Source]) -> list[EvalSet]:
        """Every source with the val split, each with its own selection metric; a source
        without it is not evaluated, and none with it is an error."""
        cfg, split = recipe.train, recipe.data.val_split or "val"
        evals = []
        for i, source in enumerate(sources):
            if split not in _in_source(i, source, lambda s=source: read_manifest(s.dir)).get("splits", {}):
                continue
            val = _in_source(i, source, lambda s=source: of_answer_types(
                read_split(s.dir, split), recipe.data.answer_types, f"{s.dir}/{split}.jsonl"))[: cfg.eval_max_samples]
            metric = _in_source(i, source, lambda v=val: selection_metric(v, cfg.select_metric))
            evals.append(EvalSet(source.name, source.dir, val, metric))
        if not evals:
            raise UserError(f"train.eval_every is set, but no data.mix source has a '{split}' split",
                            hint="prepare one (or set data.val_split), or drop train.eval_every")
        return evals

    def training_batches(self, processor, recipe: Recipe, rank: int, world: int, has_vision: bool):
        """Micro-batch m of this process, encoded and collated (map-style, for DataLoader workers)."""
        cfg = recipe.train
        if not self.mixed:
            collator = Collator(processor, recipe.data, self.sources[0].dir, train=True)
            return TrainingBatches(self.samples[0], collator, self.epochs, cfg.batch_size, cfg.seed,
                                   rank, world, pad_blank_image=has_vision)
        collators = [Collator(processor, recipe.data, source.dir, train=True) for source in self.sources]
        return MixtureBatches(self.sources, self.samples, collators, self.epochs, self.quota, cfg.batch_size,
                              cfg.seed, rank, world, pad_blank_image=has_vision)
