"""Resumable DeepSpeed checkpoints in RUN_DIR/checkpoints, with the RNG state of each process.

The rest of RUN_DIR (layout, trained weights, loading a run) is pefomed.models.run_dir's.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from pefomed.errors import UserError
from pefomed.io import atomic_write, write_json
from pefomed.models.run_dir import CHECKPOINTS_DIR as CHECKPOINTS


def rng_state() -> dict:
    """Every RNG's state as tensors and plain numbers only, so resume loads it with
    torch.load(weights_only=True): a crafted checkpoint can hold data, never code to run."""
    version, mt_state, gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {"python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss": gauss},
            "numpy": {"kind": np_kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                      "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_rng_state(path: Path) -> dict:
    try:
        return torch.load(path, weights_only=True)
    except Exception as err:  # an unpickling error: the file asks for more than tensors and numbers
        raise UserError(f"{path}: not a pefomed RNG state of plain tensors ({type(err).__name__}); refusing to "
                        f"load it (a checkpoint from an older pefomed, or a crafted file)") from None


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
    if not latest.is_file():
        return None
    tag = latest.read_text(encoding="utf-8", errors="replace").strip()
    if not re.fullmatch(r"step-\d{7}", tag):  # never a path: "../x" must not lead outside RUN_DIR
        raise UserError(f"{latest}: {tag[:60]!r} is not a checkpoint tag written by pefomed (step-NNNNNNN)")
    return tag


def _deepspeed_safe_globals() -> list:
    """The DeepSpeed classes its own checkpoints hold besides tensors and containers (plain data:
    an enum, the loss-scaler settings, a named tuple of fragment addresses)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, fragment_address]


def verify_checkpoint_files(folder: Path) -> None:
    """DeepSpeed loads its checkpoint files with torch.load(weights_only=False), which runs whatever
    a pickle asks for. Before it does, every file must load with weights_only=True and only the
    DeepSpeed data classes above allowed: a crafted RUN_DIR can hold data, never code to run."""
    allowed = _deepspeed_safe_globals()
    for path in sorted(folder.rglob("*.pt")):
        try:
            with torch.serialization.safe_globals(allowed):
                torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            what = str(err).strip().splitlines()
            detail = next((line.strip() for line in what if "GLOBAL" in line or "Unsupported" in line), type(err).__name__)
            raise UserError(f"{path}: refusing to resume from this checkpoint file: it holds more than tensors and "
                            f"DeepSpeed's plain data ({detail[:200]})",
                            hint="a checkpoint from a newer DeepSpeed, or a crafted file; start the run afresh") from None


def load_checkpoint(engine, run_dir: Path, rank: int) -> dict:
    tag = latest_tag(run_dir)
    folder = run_dir / CHECKPOINTS / tag
    verify_checkpoint_files(folder)
    _, client = engine.load_checkpoint(str(run_dir / CHECKPOINTS), tag=tag, load_module_strict=False)
    set_rng_state(load_rng_state(folder / f"rng_rank{rank}.pt"))
    return client["progress"]
