"""Saving what a run produced: the adapter (every process joins, rank 0 writes) and resumable
DeepSpeed checkpoints with the RNG state of each process.

Under ZeRO-3 each process holds only a shard of every parameter, and saving the peft model
naively writes empty tensors (a known failure of fine-tuning tools). We gather the trainable
parameters first, so the adapter on disk is complete whatever the ZeRO stage.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from pefomed.io import atomic_write, write_json

CHECKPOINTS = "checkpoints"


def trainable_state_dict(model, stage: int) -> dict[str, torch.Tensor]:
    """Full (gathered) copies of the trainable parameters, on CPU, on every rank."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
            return {n: p.detach().to("cpu", copy=True) for n, p in named}
    return {n: p.detach().to("cpu", copy=True) for n, p in named}


ADAPTER_DIR = "adapter"  # PEFT adapter methods
WEIGHTS_DIR = "weights"  # methods without an adapter (projector, full): the trained parameters


def save_trained(model, run_dir: Path, stage: int, rank: int, name: str | None = None) -> Path:
    """Write what training changed: RUN_DIR/adapter (peft) or RUN_DIR/weights (projector / full).

    Every process joins the ZeRO-3 gather; rank 0 writes to a temporary folder renamed into place.
    `name` overrides the folder name (e.g. best/ for the best evaluation so far).
    """
    from peft import PeftModel
    from safetensors.torch import save_file

    is_peft = isinstance(model, PeftModel)
    out_dir = run_dir / (name or (ADAPTER_DIR if is_peft else WEIGHTS_DIR))
    state = trainable_state_dict(model, stage)
    if rank != 0:
        return out_dir
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if is_peft:
        model.save_pretrained(tmp, state_dict=state)
    else:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in state.items()}, tmp / "model.safetensors")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(engine, run_dir: Path, step: int, progress: dict, rank: int, keep: int) -> str:
    """A DeepSpeed checkpoint (trainable weights, optimizer, scheduler) plus our progress and RNG.

    `latest` is written last, by us, once every file of the checkpoint is complete: a run killed
    while saving resumes from the previous whole checkpoint.
    """
    import torch.distributed as dist

    tag = f"step-{step:07d}"
    root = run_dir / CHECKPOINTS
    engine.save_checkpoint(str(root), tag=tag, client_state={"progress": progress}, exclude_frozen_parameters=True,
                           save_latest=False)
    torch.save(rng_state(), root / tag / f"rng_rank{rank}.pt")
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        write_json(root / tag / "progress.json", progress)
        with atomic_write(root / "latest") as handle:
            handle.write(tag)
        tags = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
        for old in tags[:-keep]:
            shutil.rmtree(root / old, ignore_errors=True)
    return tag


def latest_tag(run_dir: Path) -> str | None:
    latest = run_dir / CHECKPOINTS / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def load_checkpoint(engine, run_dir: Path, rank: int) -> dict:
    tag = latest_tag(run_dir)
    _, client = engine.load_checkpoint(str(run_dir / CHECKPOINTS), tag=tag, load_module_strict=False)
    set_rng_state(torch.load(run_dir / CHECKPOINTS / tag / f"rng_rank{rank}.pt", weights_only=False))
    return client["progress"]


class StartingPoint:
    """Two-stage training: start from an earlier run's trained weights (train.init_from).

    Stage 1 (e.g. caption alignment) may have trained an adapter plus the projector (adapter/)
    or the projector alone (weights/); stage 2 starts from whatever it left.
    """

    def __init__(self, run_dir: str | Path):
        from pefomed.errors import UserError

        self.run_dir = Path(run_dir)
        self.adapter = self.run_dir / ADAPTER_DIR / "adapter_model.safetensors"
        self.weights = self.run_dir / WEIGHTS_DIR / "model.safetensors"
        if not self.adapter.is_file() and not self.weights.is_file():
            raise UserError(f"train.init_from: {self.run_dir} has no adapter/ or weights/ (is it a finished run?)")

    def load_into_base(self, model) -> None:
        if self.weights.is_file():
            from pefomed.infer.run import load_trained_weights

            load_trained_weights(model, self.weights)

    def load_into_adapter(self, model) -> None:
        if not self.adapter.is_file():
            return
        from peft import PeftModel, set_peft_model_state_dict
        from safetensors.torch import load_file

        from pefomed.errors import UserError

        if not isinstance(model, PeftModel):
            raise UserError(f"train.init_from: {self.run_dir} trained an adapter; this run's method has none to load it into")
        result = set_peft_model_state_dict(model, load_file(self.adapter))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise UserError(f"train.init_from: {len(unexpected)} adapter weights of {self.run_dir} do not fit this "
                            f"run's method (e.g. {unexpected[0]}); use the same method and target modules")
