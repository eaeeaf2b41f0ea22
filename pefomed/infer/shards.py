"""Data-parallel inference: under a launcher (`torchrun`, `deepspeed`) that sets RANK and
WORLD_SIZE, process r answers samples r, r+N, r+2N, ... of the input order into
PRED.jsonl.part-r-of-N (through its own resumable .partial), and rank 0 merges the N parts into
PRED.jsonl in input order once every part is complete. The processes exchange nothing but these
files and one gloo barrier at the start (no GPU collective)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pefomed.errors import UserError
from pefomed.infer.resume import check_partial_rows, check_previous_settings, leftover_parts, part_path, settings_record
from pefomed.io import short, write_json
from pefomed.console import console


def process_shard() -> tuple[int, int]:
    """(rank, number of processes) set by a launcher (torchrun, deepspeed: RANK and WORLD_SIZE), or
    (0, 1) for a plain `pefomed infer`."""
    raw_rank, raw_world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if raw_world is None:
        return 0, 1
    try:
        rank, world = int(raw_rank if raw_rank is not None else 0), int(raw_world)
    except ValueError:
        raise UserError(f"RANK={raw_rank!r}, WORLD_SIZE={raw_world!r} in the environment: not whole numbers "
                        f"(they are set by torchrun or deepspeed)") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK={rank}, WORLD_SIZE={world} in the environment: RANK must be 0 to WORLD_SIZE-1")
    return rank, world


def check_layout(out: Path, world: int) -> None:
    """An interrupted run is resumed by as many processes as it had: each shard's .partial only
    holds the samples of its own interleave."""
    partial = out.with_name(out.name + ".partial")
    if world > 1 and partial.exists():
        raise UserError(f"{partial}: an interrupted run of one process left these answers; rerun it without a "
                        f"launcher to resume it, or remove the file to start afresh with {world} processes")
    for path, _, other in leftover_parts(out):
        if other != world:
            how = "without a launcher" if world == 1 else f"with {world} processes"
            raise UserError(f"{path}: an interrupted run of {other} processes left these answers; resume it with "
                            f"`torchrun --nproc_per_node {other} -m pefomed.cli.app infer ...` (the same command), "
                            f"or remove its {out.name}.part-* files to start afresh {how}")


def claim_shard(out: Path, settings: dict, samples: list, rank: int, world: int) -> None:
    """_claim_partial for one process of a data-parallel run: every process checks the settings
    record against its own; only rank 0 writes it (the others' settings are the same)."""
    part = part_path(out, rank, world)
    record = settings_record(out)
    shard = samples[rank::world]
    if rank != 0:
        if part.exists() or part.with_name(part.name + ".partial").exists():
            check_previous_settings(record, settings, part)
        for path in (part, part.with_name(part.name + ".partial")):
            if path.exists():
                check_partial_rows(path, shard)
        return
    leftovers = leftover_parts(out)
    if leftovers:
        check_previous_settings(record, settings, leftovers[0][0])
        for path, other_rank, _ in leftovers:
            check_partial_rows(path, samples[other_rank::world])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(record, settings)


def wait_for_parts(out: Path, world: int, poll_s: float = 0.5) -> None:
    """Rank 0 waits for every process's complete part. A process that fails makes the launcher
    (torchrun, deepspeed) stop the others, rank 0 included, so the wait never outlives the run."""
    import time

    waiting = [r for r in range(world) if not part_path(out, r, world).exists()]
    if waiting:
        console.print(f"waiting for the parts of process(es) {', '.join(map(str, waiting))} to merge them",
                      highlight=False, markup=False)
    while any(not part_path(out, r, world).exists() for r in range(world)):
        time.sleep(poll_s)


def merge_parts(out: Path, world: int, order: list[str]) -> None:
    """The N complete parts -> PRED.jsonl in input order, atomically, checked to answer every
    sample exactly once; the parts are removed only then."""
    from pefomed.io import atomic_write

    position = {sample_id: i for i, sample_id in enumerate(order)}
    rows: list[tuple[int, bytes]] = []
    for rank in range(world):
        part = part_path(out, rank, world)
        with open(part, "rb") as handle:
            for number, line in enumerate(handle, 1):
                sample_id = json.loads(line)["id"]
                if sample_id not in position:
                    raise UserError(f"{part}:{number}: id {short(sample_id)} is not a sample of these inputs; "
                                    f"remove the {out.name}.part-* files to start afresh")
                rows.append((position[sample_id], line))
    rows.sort(key=lambda row: row[0])
    answered = [i for i, _ in rows]
    if answered != list(range(len(order))):
        seen = set(answered)
        from collections import Counter

        twice = sorted(order[i] for i, count in Counter(answered).items() if count > 1)
        missing = [order[i] for i in range(len(order)) if i not in seen]
        raise UserError(f"{out}: the {world} parts do not answer every sample exactly once (missing "
                        f"{short(missing[:3])}, twice {short(twice[:3])}); remove the {out.name}.part-* files "
                        f"to start afresh")
    with atomic_write(out, "wb", encoding=None) as handle:
        handle.writelines(line if line.endswith(b"\n") else line + b"\n" for _, line in rows)
    for rank in range(world):
        os.remove(part_path(out, rank, world))


_OWN_GROUP: list = []  # the process group _meet created (and only that one is destroyed after)


def meet(world: int) -> None:
    """A gloo barrier (CPU and GPU alike) when a launcher gave a rendezvous address. Without it a
    fast rank 0 could merge and remove a complete part of an interrupted run while a slower process
    is still deciding whether its part is complete, and then answer its shard again."""
    if world == 1 or "MASTER_ADDR" not in os.environ:
        return
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        # generous: processes load their models at different speeds; a failed one makes the
        # launcher stop the others long before this
        dist.init_process_group("gloo", timeout=timedelta(hours=2))
        _OWN_GROUP.append(True)
    dist.barrier()


def part_company() -> None:
    """Destroy the group _meet made, never one that existed before (a caller's training group)."""
    import torch.distributed as dist

    if _OWN_GROUP and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _OWN_GROUP.clear()


def use_local_device(world: int) -> None:
    """One GPU per process: LOCAL_RANK picks it, so that the model's "cuda" is this process's."""
    if world > 1:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
