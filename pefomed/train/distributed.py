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
        if "RANK" not in os.environ:
            os.environ.update({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())})
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, verbose=False)
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
