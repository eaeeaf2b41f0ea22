"""Learning rate: linear warmup from warmup_start_lr to lr, then cosine (or linear, or constant)
down to min_lr at the last step. This is PeFoMed's schedule (warmup from 1e-6, cosine to 1e-6)
expressed as a multiplier of the peak lr for torch's LambdaLR."""

from __future__ import annotations

import math

from pefomed.recipe import TrainSection


def lr_multiplier(step: int, total_steps: int, cfg: TrainSection) -> float:
    start = cfg.warmup_start_lr / cfg.lr
    floor = cfg.min_lr / cfg.lr
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return start + (1.0 - start) * step / cfg.warmup_steps
    if cfg.scheduler == "constant":
        return 1.0
    span = max(total_steps - cfg.warmup_steps, 1)
    progress = min(max(step - cfg.warmup_steps, 0) / span, 1.0)
    if cfg.scheduler == "linear":
        return floor + (1.0 - floor) * (1.0 - progress)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
