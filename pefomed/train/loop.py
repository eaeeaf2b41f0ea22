"""`pefomed train`: the DeepSpeed training loop, small enough to read in one sitting.

One code path for a laptop CPU (a one-process gloo group), one GPU (bf16) and many processes
(deepspeed / torchrun launchers): build the model, attach the PEFT method, hand model, AdamW and
the schedule to deepspeed.initialize, and step. Data order is a seeded permutation per epoch,
sharded by rank, so a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
import random
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pefomed.console import console, explain_interrupt, progress_bar
from pefomed.data.train_batches import IMAGE_KEYS, STORED_FEATURES, ImageKeyed
from pefomed.errors import UserError
from pefomed.io import atomic_write, write_json
from pefomed.models import run_dir as run_dir_layout
from pefomed.models.bundle import innermost
from pefomed.models.components import component_of, count_parameters
from pefomed.models.feature_cache import check_recipe as check_feature_cache
from pefomed.models.feature_cache import open_feature_cache, write_summary
from pefomed.models.loader import check_model_source, load_base, materialize_base, torch_dtype
from pefomed.models.peft_methods import apply_method
from pefomed.models.run_dir import StartingPoint, TrainedWeights, recover_saved, save_trained
from pefomed.options import command_line
from pefomed.recipe import Recipe
from pefomed.train import checkpoints
from pefomed.train.deepspeed_config import resolve, zero_stage
from pefomed.train.distributed import barrier, device, init_distributed
from pefomed.train.evaluate import evaluate
from pefomed.train.fused_loss import check_loss_kernel, liger_cross_entropy_sum
from pefomed.train.grpo_step import GrpoStepper
from pefomed.train.grpo_step import check_recipe as check_grpo
from pefomed.train.log import RunLog
from pefomed.train.loss import answer_tokens, micro_batch_loss_sum, scaled_for_deepspeed
from pefomed.train.plan import Plan, check_data
from pefomed.train.schedule import lr_multiplier


def _quiet_deepspeed() -> None:
    import logging

    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # "No CUDA runtime is found" (torch's C++ extension loader, imported by DeepSpeed) is noise on a
    # machine without a GPU: the run says which device it uses
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
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


def _param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (PeFoMed/MiniGPT-v2): biases and norm weights are exempt."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0})
            if g["params"]]


def _loader(batches, start: int, end: int, cfg):
    """Micro-batches start..end-1 in order. With train.num_workers, DataLoader worker processes
    build them ahead of the model (decoding, processor, padding) into pinned memory; batch m is
    the same either way (TrainingBatches has no hidden state), so resume and sharding are exact."""
    import torch
    from torch.utils.data import DataLoader

    if cfg.num_workers == 0:
        return (batches[m] for m in range(start, end))
    # the tokenizer's own thread pool must not be forked mid-use (it would deadlock or warn)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return DataLoader(batches, sampler=range(start, end), batch_size=None, num_workers=cfg.num_workers,
                      prefetch_factor=cfg.prefetch_batches, pin_memory=torch.cuda.is_available(),
                      multiprocessing_context="fork",
                      # its own generator: starting workers must not draw from the global RNG, which
                      # a resumed run has just restored (dropout would shift by one draw)
                      generator=torch.Generator().manual_seed(0))


def _summed(counts, world: int) -> tuple[int, ...]:
    """Integer counts summed over all processes."""
    import torch
    import torch.distributed as dist

    total = torch.tensor([float(c) for c in counts], dtype=torch.float64, device=device())
    if world > 1:
        dist.all_reduce(total)
    return tuple(int(c) for c in total.tolist())


def _to_device(batch: dict, device, dtype):
    import torch

    out = {}
    for key, value in batch.items():
        value = value.to(device)
        if torch.is_floating_point(value) and dtype is not None:
            value = value.to(dtype)
        out[key] = value
    return out


def _length_prepass(batches, recipe: Recipe, run_dir: Path, is_main: bool) -> None:
    """Count every training sample's tokens before step 1 (pefomed.data.length_budget): the first
    process measures (in DataLoader workers) and writes RUN_DIR/length_budget.json, the others
    read its verdict, so an over-long prompt stops every process with the same message."""
    from pefomed.data.length_budget import cache_key, describe, length_budget

    key = cache_key([s.to_dict() for s in batches.samples], recipe.model.model_dump(mode="json"),
                    recipe.data.model_dump(mode="json"))

    def measure() -> dict:
        return length_budget(batches.samples, batches.collator, recipe.data.max_length, recipe.train.num_workers,
                             run_dir / run_dir_layout.LENGTH_BUDGET_JSON, key,
                             where=f"the training split ({recipe.data.train_split})" + (
                                 f" of the {len(recipe.data.mix)} data.mix sources" if recipe.data.mix else ""))

    if is_main:
        try:
            summary = measure()
        finally:
            barrier()  # also when it refuses: the others then read the same verdict
        console.print(describe(summary))
    else:
        barrier()
        measure()


@dataclass
class TrainResult:
    run_dir: Path
    saved: Path  # RUN_DIR/adapter or RUN_DIR/weights
    model: object  # the trained model (peft-wrapped for adapter methods), still in memory
    engine: object  # the DeepSpeed engine (under ZeRO-3, forward through it gathers parameters)


def grpo_row(window: dict, num_generations: int) -> dict:
    """train_log's GRPO columns for the steps since the last row (every process's answers)."""
    answers = max(window["groups"] * num_generations, 1.0)
    return {"reward_mean": round(window["reward_sum"] / answers, 6),
            # the spread that drives the advantages: the mean over groups of each group's std
            "reward_std": round(window["reward_std_sum"] / max(window["groups"], 1.0), 6),
            "kl": round(window["kl_sum"] / max(window["tokens"], 1.0), 6),
            "clip_fraction": round(window["clipped_sum"] / max(window["tokens"], 1.0), 6),
            "completion_length": round(window["tokens"] / max(window["sequences"], 1.0), 3),
            "answers": int(window["sequences"]),  # sampled in the window, by every process
            "rollout_share": round(window["rollout_s"] / max(window["step_s"], 1e-9), 4)}


def check_inputs(recipe: Recipe, run_dir: Path, resume: bool) -> list:
    """Cheap checks before any process group, model or RUN_DIR exists; returns the training
    sources (pefomed.train.plan.check_data: one DATA_DIR, or data.mix's)."""
    import torch



    if resume and checkpoints.latest_tag(run_dir) is None:
        raise UserError(f"{run_dir}: nothing to resume (no checkpoints/latest)")
    sources = check_data(recipe)
    check_model_source(recipe.model)
    check_feature_cache(recipe)
    check_grpo(recipe)
    check_loss_kernel(recipe.train.loss_kernel)  # before the model loads: CUDA and liger-kernel
    if recipe.train.precision == "fp16" and not torch.cuda.is_available():
        raise UserError("train.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on this machine")
    return sources


def _build_model(recipe: Recipe, run_dir: Path, is_main: bool, resume: bool, ds_config: dict | None = None):
    """Base model + method (+ the stage-1 starting point); writes recipe.yaml, trainable.json, processor/.
    `ds_config`: the resolved DeepSpeed config (resolved here when not given)."""

    cfg = recipe.train
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(run_dir / run_dir_layout.RECIPE_FILE) as handle:
            handle.write(recipe.to_yaml())
        materialize_base(recipe.model, run_dir)  # the first process builds the tiny base, if any
    barrier()
    # bf16/fp16 runs load the frozen base in that dtype (half the host memory of fp32);
    # DeepSpeed keeps fp32 master copies of the trainable parameters. Under ZeRO-3 (not QLoRA)
    # each process loads only its partition of the base (pefomed.models.loader.load_base)
    if ds_config is None:
        import torch.distributed as dist

        ds_config = resolve(cfg, dist.get_world_size())
    bundle = load_base(materialize_base(recipe.model, run_dir), recipe.model, cfg.precision,
                       deepspeed=ds_config, method=recipe.method)
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


    run_dir, cfg = Path(run_dir), recipe.train
    sources = check_inputs(recipe, run_dir, resume)
    rank, world = init_distributed()
    is_main = rank == 0
    seed_everything(cfg.seed)
    ds_config = resolve(cfg, world)
    stage = zero_stage(ds_config)
    plan = Plan.make(recipe, sources, world)
    model, processor = _build_model(recipe, run_dir, is_main, resume, ds_config)
    # train.feature_cache: the tower is fingerprinted before DeepSpeed partitions it; under ZeRO-3
    # with several processes they agree per micro-batch whether it runs (its gathers are collective)
    feature_cache = open_feature_cache(recipe, model, run_dir, device() if stage == 3 and world > 1 else None) \
        if cfg.feature_cache else None
    grpo = cfg.objective == "grpo"
    # GRPO's updates_per_rollout optimizer steps per planned step, each one scheduler step
    engine, scheduler = _build_engine(model, cfg, ds_config,
                                      plan.total_steps * (cfg.grpo.updates_per_rollout if grpo else 1))
    dtype = None if cfg.precision == "fp32" else torch_dtype(cfg.precision)
    head = innermost(engine.module).get_output_embeddings()
    check_loss_kernel(cfg.loss_kernel, stage, head is not None and any(p.requires_grad for p in head.parameters()))
    loss_kernel = liger_cross_entropy_sum() if cfg.loss_kernel == "liger" else None

    step, micro = 0, 0
    if resume:
        progress = checkpoints.load_checkpoint(engine, run_dir, rank)
        step, micro = progress["step"], progress["micro"]
        if step >= plan.total_steps:
            if is_main:
                recover_saved(run_dir)  # a save killed between its renames: its old folder back in place
            if TrainedWeights.of_run(run_dir) is not None:
                raise UserError(f"{run_dir}: the run finished at step {step} of {plan.total_steps}; nothing to resume",
                                hint="its trained weights are in " + str(run_dir))
            # killed after the final checkpoint but before its weights were saved: the checkpoint
            # holds exactly the model they would have been saved from, so save them now
            if feature_cache:
                feature_cache.close()
            if is_main:
                console.print(f"{run_dir}: finished at step {step} but its trained weights were not saved; "
                              f"saving them from checkpoint {checkpoints.latest_tag(run_dir)}")
            saved = save_trained(engine.module, run_dir, stage, rank)
            if is_main:
                write_json(run_dir / run_dir_layout.LAST_JSON, {"step": step,
                                                               "checkpoint": checkpoints.latest_tag(run_dir),
                                                               "saved": saved.name})
            barrier()
            return TrainResult(run_dir=run_dir, saved=saved, model=engine.module, engine=engine)
        if is_main:
            console.print(f"resuming {run_dir} from step {step} of {plan.total_steps} "
                          f"(checkpoint {checkpoints.latest_tag(run_dir)})")
    log = RunLog(run_dir, is_main, step if resume else None, cfg.tensorboard)
    has_vision = any(component_of(n) == "vision" for n, _ in engine.module.named_parameters())
    batches = plan.training_batches(processor, recipe, rank, world, has_vision)
    if cfg.length_prepass:
        _length_prepass(batches, recipe, run_dir, is_main)
    engine.train()
    stepper = GrpoStepper(engine, processor, recipe, plan.sources[0].dir, {s.id: s for s in plan.samples[0]},
                          rank, world, stage) if grpo else None
    window = {"loss": 0.0, "tokens": 0.0, "samples": 0, "data_wait": 0.0, "start": time.perf_counter()}
    grpo_window: dict = {}
    bar = progress_bar() if is_main else None
    if bar:
        bar.start()
        task = bar.add_task("training", total=plan.total_steps, completed=step, status="")
    micro_batches = iter(_loader(ImageKeyed(batches, feature_cache.read) if feature_cache else batches, micro,
                                 plan.total_steps * cfg.grad_accum, cfg))
    try:
        while step < plan.total_steps:
            # one optimizer step: its micro-batches first, so the loss can be normalised by the
            # answer tokens of the whole global batch (pefomed.train.loss)
            wait_start = time.perf_counter()
            step_batches = [next(micro_batches) for _ in range(cfg.grad_accum)]
            window["data_wait"] += time.perf_counter() - wait_start
            if stepper:
                stats = stepper.step(step_batches, micro)
                micro += len(step_batches)
                window["samples"] += sum(len(ids) for ids, _ in step_batches) * world
                # the loss row is the mean of the steps' losses; the rest are summed for the row
                window["loss"] += stats["loss"]
                window["tokens"] += 1.0
                for key, value in stats.items():
                    grpo_window[key] = grpo_window.get(key, 0.0) + value
            # on the training device: NCCL reduces only CUDA tensors
            tokens = torch.tensor(float(sum(answer_tokens(batch["labels"]) for _, batch in step_batches)),
                                  device=device())
            if world > 1 and not stepper:
                dist.all_reduce(tokens)
            for ids, batch in ([] if stepper else step_batches):
                labels = batch.pop("labels")
                keys, stored = batch.pop(IMAGE_KEYS, None), batch.pop(STORED_FEATURES, None)
                with feature_cache.serving(keys, stored) if feature_cache else nullcontext():
                    loss_sum = micro_batch_loss_sum(engine, _to_device(batch, device(), dtype), labels,
                                                    answer_only=cfg.answer_only_logits, kernel=loss_kernel)
                engine.backward(scaled_for_deepspeed(loss_sum, int(tokens.item()), cfg.grad_accum, world))
                engine.step()
                micro += 1
                window["loss"] += loss_sum.item()
                window["samples"] += len(ids) * world
            if not stepper:
                window["tokens"] += tokens.item()
            step += 1
            if step % cfg.log_every == 0 or step == plan.total_steps:
                # mean loss per answer token over the window, all processes
                mean_loss = torch.tensor(window["loss"], device=device())
                if world > 1 and not stepper:  # GRPO's step losses are already summed over processes
                    dist.all_reduce(mean_loss)
                mean_loss /= max(window["tokens"], 1.0)
                elapsed = max(time.perf_counter() - window["start"], 1e-9)
                row = {"step": step, "epoch": round(micro / plan.epochs.micro_per_epoch, 4),
                       "loss": round(mean_loss.item(), 6), "lr": scheduler.get_last_lr()[0],
                       "samples_per_s": round(window["samples"] / elapsed, 3),
                       "peak_memory_mb": round(peak_memory_mb(), 1),
                       # seconds the steps since the last row waited for their batches (the GPU idles then)
                       "data_wait_s": round(window["data_wait"], 4), "elapsed_s": round(elapsed, 4)}
                if stepper:
                    row.update(grpo_row(grpo_window, recipe.train.grpo.num_generations))
                    grpo_window = {}
                if feature_cache:  # images served from / stored into the cache, all processes
                    row["feature_cache_hits"], row["feature_cache_misses"] = _summed(feature_cache.take_counts(), world)
                log.train_row(row)
                if bar:
                    bar.update(task, completed=step, status=f"loss {row['loss']:.4f} lr {row['lr']:.2e}")
                window = {"loss": 0.0, "tokens": 0.0, "samples": 0, "data_wait": 0.0, "start": time.perf_counter()}
            elif bar:
                bar.update(task, completed=step)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == plan.total_steps):
                evaluation = evaluate(engine.module, processor, recipe, plan.evals, rank, world, stage)
                if log.eval_row(step, evaluation):
                    save_trained(engine.module, run_dir, stage, rank, name=run_dir_layout.BEST_DIR)
            if (cfg.save_every and step % cfg.save_every == 0) or step == plan.total_steps:
                checkpoints.save_checkpoint(engine, run_dir, step, {"step": step, "micro": micro}, rank,
                                            cfg.keep_checkpoints)
    except KeyboardInterrupt:
        if is_main:
            tag = checkpoints.latest_tag(run_dir)
            explain_interrupt(f"interrupted at step {step} of {plan.total_steps}; " + (
                f"kept checkpoint {tag}: continue with {command_line('train', resume=run_dir)}" if tag else
                "no checkpoint was saved yet (set train.save_every to keep progress); start the run again"))
        raise
    finally:
        if bar:
            bar.stop()
        log.close()
        if feature_cache:
            feature_cache.close()  # the model's own vision path again (evaluation after training, export)
    if feature_cache:
        hits, misses = _summed((feature_cache.total_hits, feature_cache.total_misses), world)
        if is_main:
            write_summary(feature_cache, run_dir, hits, misses)
    saved = save_trained(engine.module, run_dir, stage, rank)
    if is_main:
        write_json(run_dir / run_dir_layout.LAST_JSON, {"step": step, "checkpoint": checkpoints.latest_tag(run_dir),
                                           "saved": saved.name})
    barrier()
    return TrainResult(run_dir=run_dir, saved=saved, model=engine.module, engine=engine)
