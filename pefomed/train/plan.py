"""What a training run reads and how long it is, fixed before its first step: the training
samples, the epoch arithmetic, the batches each process sees, and the validation samples with
the metric that selects the best step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.data.collate import Collator
from pefomed.data.train_batches import EpochPlan, TrainingBatches
from pefomed.errors import UserError
from pefomed.recipe import Recipe
from pefomed.records import read_split
from pefomed.train.evaluate import selection_metric


def check_data(recipe: Recipe) -> Path:
    """The training DATA_DIR, checked before any process group or model exists."""
    if recipe.data.dir is None:
        raise UserError("no training data: pass --data DATA_DIR or set data.dir in the recipe")
    data_dir = Path(recipe.data.dir)
    if not (data_dir / "manifest.json").is_file():
        raise UserError(f"{data_dir}: not a prepared DATA_DIR (no manifest.json); run `pefomed prepare` first")
    return data_dir


@dataclass
class Plan:
    samples: list
    epochs: EpochPlan
    val_samples: list
    metric: str | None
    data_dir: Path

    @property
    def total_steps(self) -> int:
        return self.epochs.total_steps

    @classmethod
    def make(cls, recipe: Recipe, data_dir: Path, world: int) -> "Plan":
        cfg = recipe.train
        samples = read_split(data_dir, recipe.data.train_split)
        epochs = EpochPlan.make(len(samples), cfg.batch_size, world, cfg.grad_accum, cfg.epochs, cfg.max_steps,
                                where=f"{data_dir}/{recipe.data.train_split}.jsonl")
        val_samples, metric = [], None
        if cfg.eval_every:
            val_samples = read_split(data_dir, recipe.data.val_split or "val")[: cfg.eval_max_samples]
            metric = selection_metric(val_samples, cfg.select_metric)
        return cls(samples, epochs, val_samples, metric, data_dir)

    def training_batches(self, processor, recipe: Recipe, rank: int, world: int, has_vision: bool) -> TrainingBatches:
        """Micro-batch m of this process, encoded and collated (map-style, for DataLoader workers)."""
        collator = Collator(processor, recipe.data, self.data_dir, train=True)
        return TrainingBatches(self.samples, collator, self.epochs, recipe.train.batch_size, recipe.train.seed,
                               rank, world, pad_blank_image=has_vision)
