"""`pefomed train`: the DeepSpeed training loop, small enough to read in one sitting.

One code path for a laptop CPU (a one-process gloo group), one GPU (bf16) and many processes
(deepspeed / torchrun launchers): build the model, attach the PEFT method, hand model, AdamW and
the schedule to deepspeed.initialize, and step. Data order is a seeded permutation per epoch,
sharded by rank, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import os
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pefomed.console import console, progress_bar
from pefomed.errors import UserError
from pefomed.io import atomic_write, write_json
from pefomed.models import run_dir as run_dir_layout
from pefomed.models.run_dir import save_trained
from pefomed.recipe import Recipe
from pefomed.records import read_split


def _quiet_deepspeed() -> None:
    import logging

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def micro_batch_indices(n_samples: int, epoch: int, index: int, seed: int, batch: int, rank: int, world: int) -> list[int]:
    """Sample indices of micro-batch `index` of `epoch` for `rank`: a seeded permutation per epoch,
    consecutive slices interleaved across ranks (so the global batch equals a one-process batch of
    batch * world samples)."""
    import torch

    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n_samples, generator=generator)
    start = (index * world + rank) * batch
    return order[start:start + batch].tolist()


def _param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (PeFoMed/MiniGPT-v2): biases and norm weights are exempt."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
            if g["params"]]


def _tensorboard(run_dir: Path):
    """A SummaryWriter in RUN_DIR/tensorboard when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / run_dir_layout.TENSORBOARD_DIR))


def _to_device(batch: dict, device, dtype):
    import torch

    out = {}
    for key, value in batch.items():
        value = value.to(device)
        if torch.is_floating_point(value) and dtype is not None:
            value = value.to(dtype)
        out[key] = value
    return out


@dataclass
class TrainResult:
    run_dir: Path
    saved: Path  # RUN_DIR/adapter or RUN_DIR/weights
    model: object  # the trained model (peft-wrapped for adapter methods), still in memory
    engine: object  # the DeepSpeed engine (under ZeRO-3, forward through it gathers parameters)


class RunLog:
    """train_log.jsonl, eval_log.jsonl, best.json and TensorBoard, written by the first process.

    On resume, rows after the checkpoint's step are dropped (they belong to the interrupted
    attempt and will be written again).
    """

    def __init__(self, run_dir: Path, is_main: bool, resumed_step: int | None, tensorboard: bool):
        self.train_path, self.eval_path, self.best_path = (
            run_dir / run_dir_layout.TRAIN_LOG, run_dir / run_dir_layout.EVAL_LOG, run_dir / run_dir_layout.BEST_JSON)
        self.is_main = is_main
        self.best = -math.inf
        if resumed_step is not None and self.best_path.exists():
            self.best = json.loads(self.best_path.read_text())["value"]
        if is_main:
            for path in (self.train_path, self.eval_path):
                if resumed_step is None or not path.exists():
                    path.unlink(missing_ok=True)
                    continue
                kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resumed_step]
                with atomic_write(path) as handle:
                    handle.write("".join(line + "\n" for line in kept))
            if resumed_step is None:
                self.best_path.unlink(missing_ok=True)
        self.board = _tensorboard(run_dir) if tensorboard and is_main else None

    def _append(self, path: Path, row: dict) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def train_row(self, row: dict) -> None:
        if self.is_main:
            self._append(self.train_path, row)
            if self.board:
                for key in ("loss", "lr", "samples_per_s", "peak_memory_mb"):
                    self.board.add_scalar(f"train/{key}", row[key], row["step"])

    def eval_row(self, step: int, metric: str, value: float) -> bool:
        """Record an evaluation; True when it is the best so far (on every process)."""
        improved = value > self.best
        self.best = max(self.best, value)
        if self.is_main:
            row = {"step": step, "metric": metric, "value": value, "best": self.best}
            self._append(self.eval_path, row)
            if improved:
                write_json(self.best_path, row)
            if self.board:
                self.board.add_scalar(f"val/{metric}", value, step)
            console.print(f"step {step}: val {metric} = {value:.4f}" + (" (best)" if improved else ""))
        return improved

    def close(self) -> None:
        if self.board:
            self.board.close()


@dataclass
class Plan:
    """How long the run is and what it reads: fixed before the first step."""

    samples: list
    micro_per_epoch: int
    total_steps: int
    val_samples: list
    metric: str | None

    @classmethod
    def make(cls, recipe: Recipe, data_dir: Path, world: int) -> "Plan":
        from pefomed.train.evaluate import selection_metric

        cfg = recipe.train
        samples = read_split(data_dir, recipe.data.train_split)
        micro_per_epoch = len(samples) // (cfg.batch_size * world)
        if micro_per_epoch < cfg.grad_accum:
            raise UserError(f"{data_dir}/{recipe.data.train_split}.jsonl has {len(samples)} samples, fewer than one "
                            f"global batch ({cfg.batch_size} x {world} processes x {cfg.grad_accum} accumulation)")
        total = cfg.max_steps or max(1, math.ceil(cfg.epochs * (micro_per_epoch // cfg.grad_accum)))
        val_samples, metric = [], None
        if cfg.eval_every:
            val_samples = read_split(data_dir, recipe.data.val_split or "val")[: cfg.eval_max_samples]
            metric = selection_metric(val_samples, cfg.select_metric)
        return cls(samples, micro_per_epoch, total, val_samples, metric)


def _check_inputs(recipe: Recipe, run_dir: Path, resume: bool) -> Path:
    import torch

    from pefomed.models.loader import check_model_source

    from pefomed.train import checkpoints

    if resume and checkpoints.latest_tag(run_dir) is None:
        raise UserError(f"{run_dir}: nothing to resume (no checkpoints/latest)")
    if recipe.data.dir is None:
        raise UserError("no training data: pass --data DATA_DIR or set data.dir in the recipe")
    data_dir = Path(recipe.data.dir)
    if not (data_dir / "manifest.json").is_file():
        raise UserError(f"{data_dir}: not a prepared DATA_DIR (no manifest.json); run `pefomed prepare` first")
    check_model_source(recipe.model)
    if recipe.train.precision == "fp16" and not torch.cuda.is_available():
        raise UserError("train.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on this machine")
    return data_dir


def _build_model(recipe: Recipe, run_dir: Path, is_main: bool, resume: bool):
    """Base model + method (+ the stage-1 starting point); writes recipe.yaml, trainable.json, processor/."""
    from pefomed.models.components import count_parameters
    from pefomed.models.loader import load_base, materialize_base
    from pefomed.models.peft_methods import apply_method
    from pefomed.models.run_dir import StartingPoint
    from pefomed.train.distributed import barrier

    cfg = recipe.train
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / run_dir_layout.RECIPE_FILE) as handle:
            handle.write(recipe.to_yaml())
        materialize_base(recipe.model, run_dir)  # the first process builds the tiny base, if any
    barrier()
    # bf16/fp16 runs load the frozen base in that dtype (half the host memory of fp32);
    # DeepSpeed keeps fp32 master copies of the trainable parameters
    bundle = load_base(materialize_base(recipe.model, run_dir), recipe.model, cfg.precision)
    model = bundle.model
    start = StartingPoint(cfg.init_from) if cfg.init_from and not resume else None
    if start:
        start.load_into_base(model)  # projector / full weights: before the adapter copies modules
    model = apply_method(model, recipe.method)
    if start:
        start.load_into_adapter(model)
    if cfg.gradient_checkpointing:
        # non-reentrant checkpointing: correct gradients even though the frozen vision tower's
        # outputs (the layers' inputs) do not require grad
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = count_parameters(model)
    if is_main:
        write_json(run_dir / run_dir_layout.TRAINABLE_JSON, {"method": recipe.method.name, **params})
        bundle.processor.save_pretrained(run_dir / run_dir_layout.PROCESSOR_DIR)
        console.print(f"trainable parameters: {params['all']['trainable']:,} of {params['all']['total']:,} "
                      f"({params['trainable_percent']}%) · " + ", ".join(
                          f"{k} {v['trainable']:,}" for k, v in sorted(params["components"].items())))
    return model, bundle.processor


def _build_engine(model, cfg, ds_config: dict, total_steps: int):
    """AdamW + warmup/cosine schedule, handed to deepspeed.initialize."""
    import deepspeed
    import torch

    from pefomed.train.schedule import lr_multiplier

    groups = _param_groups(model, cfg.weight_decay)
    if ds_config.get("zero_optimization", {}).get("offload_optimizer", {}).get("device") == "cpu":
        # ZeRO-Offload steps the optimizer on the CPU: DeepSpeed's vectorised CPU AdamW (compiled
        # on first use) is the one it supports there; same AdamW maths as torch's.
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(groups, lr=cfg.lr, betas=tuple(cfg.betas), adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, total_steps, cfg))
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine, scheduler


def train(recipe: Recipe, run_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train per `recipe` into `run_dir` (or continue the run there, with resume=True)."""
    _quiet_deepspeed()
    import torch
    import torch.distributed as dist

    from pefomed.data.collate import Collator
    from pefomed.models.components import component_of
    from pefomed.models.loader import torch_dtype
    from pefomed.train import checkpoints
    from pefomed.train.deepspeed_config import resolve, zero_stage
    from pefomed.train.distributed import barrier, device, init_distributed
    from pefomed.train.evaluate import evaluate
    from pefomed.train.mixed_batches import BlankImagePadding

    run_dir, cfg = Path(run_dir), recipe.train
    data_dir = _check_inputs(recipe, run_dir, resume)
    rank, world = init_distributed()
    is_main = rank == 0
    seed_everything(cfg.seed)
    ds_config = resolve(cfg, world)
    stage = zero_stage(ds_config)
    plan = Plan.make(recipe, data_dir, world)
    model, processor = _build_model(recipe, run_dir, is_main, resume)
    engine, scheduler = _build_engine(model, cfg, ds_config, plan.total_steps)
    dtype = None if cfg.precision == "fp32" else torch_dtype(cfg.precision)

    step, micro = 0, 0
    if resume:
        progress = checkpoints.load_checkpoint(engine, run_dir, rank)
        step, micro = progress["step"], progress["micro"]
    log = RunLog(run_dir, is_main, step if resume else None, cfg.tensorboard)
    collator = Collator(processor, recipe.data, data_dir, train=True)
    has_vision = any(component_of(n) == "vision" for n, _ in engine.module.named_parameters())
    pad_with_blank_image = BlankImagePadding(collator)
    engine.train()
    window = {"loss": 0.0, "micro": 0, "samples": 0, "start": time.perf_counter()}
    bar = progress_bar() if is_main else None
    if bar:
        bar.start()
        task = bar.add_task("training", total=plan.total_steps, completed=step, status="")
    try:
        while step < plan.total_steps:
            epoch, index = divmod(micro, plan.micro_per_epoch)
            ids = micro_batch_indices(len(plan.samples), epoch, index, cfg.seed, cfg.batch_size, rank, world)
            encodings = [collator.encode(plan.samples[i]) for i in ids]
            if has_vision:
                encodings = pad_with_blank_image(encodings)
            loss = engine(**_to_device(collator(encodings), device(), dtype)).loss
            engine.backward(loss)
            engine.step()
            micro += 1
            window["loss"] += loss.item()
            window["micro"] += 1
            window["samples"] += len(ids) * world
            if micro % cfg.grad_accum:
                continue
            step += 1
            if step % cfg.log_every == 0 or step == plan.total_steps:
                mean_loss = torch.tensor(window["loss"] / window["micro"])
                if world > 1:
                    dist.all_reduce(mean_loss)
                    mean_loss /= world
                elapsed = max(time.perf_counter() - window["start"], 1e-9)
                row = {"step": step, "epoch": round(micro / plan.micro_per_epoch, 4),
                       "loss": round(mean_loss.item(), 6), "lr": scheduler.get_last_lr()[0],
                       "samples_per_s": round(window["samples"] / elapsed, 3),
                       "peak_memory_mb": round(peak_memory_mb(), 1)}
                log.train_row(row)
                if bar:
                    bar.update(task, completed=step, status=f"loss {row['loss']:.4f} lr {row['lr']:.2e}")
                window = {"loss": 0.0, "micro": 0, "samples": 0, "start": time.perf_counter()}
            elif bar:
                bar.update(task, completed=step)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == plan.total_steps):
                value = evaluate(engine.module, processor, recipe, data_dir, plan.val_samples, plan.metric,
                                 rank, world, stage)
                if log.eval_row(step, plan.metric, value):
                    save_trained(engine.module, run_dir, stage, rank, name=run_dir_layout.BEST_DIR)
            if (cfg.save_every and step % cfg.save_every == 0) or step == plan.total_steps:
                checkpoints.save_checkpoint(engine, run_dir, step, {"step": step, "micro": micro}, rank,
                                            cfg.keep_checkpoints)
    finally:
        if bar:
            bar.stop()
        log.close()
    saved = save_trained(engine.module, run_dir, stage, rank)
    if is_main:
        write_json(run_dir / run_dir_layout.LAST_JSON, {"step": step, "checkpoint": checkpoints.latest_tag(run_dir),
                                           "saved": saved.name})
    barrier()
    return TrainResult(run_dir=run_dir, saved=saved, model=engine.module, engine=engine)
