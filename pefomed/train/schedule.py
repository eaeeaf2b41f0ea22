"""Learning rate, as a multiplier of the peak lr for torch's LambdaLR. `step` is the 0-based index
of the optimizer update the rate is for (LambdaLR asks for step 0 before the first update).

- `cosine`, `linear`, `constant`: linear warmup from warmup_start_lr to lr over warmup_steps, then
  a per-step cosine (or linear) decay to min_lr at the last step, or lr throughout.
- `epoch_cosine`: MiniGPT-4 / PeFoMed's `linear_warmup_cosine_lr` (common/optims.py,
  LinearWarmupCosineLRScheduler) step for step, with `train.epoch_steps` as its iters_per_epoch and
  max_epoch = ceil(total_steps / epoch_steps). At update k, epoch e = k // epoch_steps and
  s = k % epoch_steps:
    k < warmup:  min(lr, warmup_start_lr + (lr - warmup_start_lr) * s / max(warmup, 1))
    otherwise:   min_lr + (lr - min_lr) * 0.5 * (1 + cos(pi * e / max_epoch))
  so the rate is constant within each epoch after the warmup (a staircase) and the last epoch
  stays above min_lr. Released quirks kept on purpose: warmup_steps 0 means one epoch of warmup
  (the released scheduler sets warmup_steps = iters_per_epoch then), and the warmup counts s, the
  step within the epoch, so a warmup longer than an epoch starts over at each epoch boundary
  until it ends.
"""

from __future__ import annotations

import math

from pefomed.errors import UserError
from pefomed.recipe import TrainSection


def check_schedule(cfg: TrainSection) -> None:
    """Refuse, before training starts, a schedule the recipe cannot run."""
    if cfg.scheduler == "epoch_cosine" and not cfg.epoch_steps:
        raise UserError("train.scheduler=epoch_cosine needs train.epoch_steps: the optimizer steps per schedule "
                        "epoch (MiniGPT-4's run.iters_per_epoch)",
                        hint="set train.epoch_steps (the PeFoMed recipes use 100; 1000 for stage 1)")


def epoch_cosine_lr(step: int, total_steps: int, cfg: TrainSection) -> float:
    """The released linear_warmup_cosine_lr rate (absolute, not a multiplier) at update `step`."""
    check_schedule(cfg)
    per_epoch = cfg.epoch_steps
    max_epoch = max(math.ceil(total_steps / per_epoch), 1)
    warmup = cfg.warmup_steps or per_epoch
    epoch, within = divmod(step, per_epoch)
    if step < warmup:
        return min(cfg.lr, cfg.warmup_start_lr + (cfg.lr - cfg.warmup_start_lr) * within / max(warmup, 1))
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch))


def lr_multiplier(step: int, total_steps: int, cfg: TrainSection) -> float:
    if cfg.scheduler == "epoch_cosine":
        return epoch_cosine_lr(step, total_steps, cfg) / cfg.lr
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
