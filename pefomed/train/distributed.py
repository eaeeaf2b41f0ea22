"""The torch.distributed process group DeepSpeed needs.

Launched by `deepspeed` or `torchrun`, the launcher sets RANK / WORLD_SIZE / MASTER_ADDR /
MASTER_PORT and we join that group. Run plainly (`pefomed train ...`), we make a one-process
group ourselves, so the same DeepSpeed path runs on a laptop and on a cluster. The backend is
NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
import socket


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed() -> tuple[int, int]:
    """Return (rank, world_size), creating a one-process group when no launcher did."""
    import deepspeed
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if "RANK" in os.environ:  # a launcher set up the group
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)
        else:
            # Our own one-process group, through an explicit init_method rather than by writing
            # RANK/MASTER_PORT into os.environ: child processes (a launcher, a test's subprocess)
            # must not inherit a group they do not belong to. DeepSpeed's engine still reads
            # LOCAL_RANK, which is harmless to inherit.
            os.environ.setdefault("LOCAL_RANK", "0")
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False,
                                       init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def device():
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
