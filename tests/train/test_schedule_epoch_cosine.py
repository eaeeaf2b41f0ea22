"""train.scheduler: epoch_cosine is MiniGPT-4 / PeFoMed's linear_warmup_cosine_lr (common/optims.py,
LinearWarmupCosineLRScheduler) step for step: warmup within the first epoch from warmup_lr, then the
rate fixed within each epoch at the cosine value of the epoch index over max_epoch."""

import json
import math

import pytest
import torch

from pefomed.errors import UserError
from pefomed.recipe import load_recipe
from pefomed.train.schedule import check_schedule, lr_multiplier


def cfg_of(**train):
    overrides = [f"train.{key}={value}" for key, value in train.items()]
    return load_recipe("tiny-demo", ["train.scheduler=epoch_cosine", *overrides]).train


def rates(cfg, total):
    return [cfg.lr * lr_multiplier(k, total, cfg) for k in range(total)]


def test_hand_computed_toy_table():
    # lr 1, min 0, warmup from 0 over 2 updates, epochs of 4 updates, 3 epochs (12 updates):
    # warmup s/2 while k < 2, then 0.5 * (1 + cos(pi * e / 3)) = 1, 0.75, 0.25 per epoch
    cfg = cfg_of(lr=1.0, min_lr=0.0, warmup_start_lr=0.0, warmup_steps=2, epoch_steps=4)
    assert rates(cfg, 12) == pytest.approx([0.0, 0.5, 1.0, 1.0,
                                            0.75, 0.75, 0.75, 0.75,
                                            0.25, 0.25, 0.25, 0.25], abs=1e-12)


def test_released_quirks_warmup_zero_means_one_epoch_and_warmup_counts_the_step_in_its_epoch():
    # the released __init__: warmup_steps 0 -> iters_per_epoch; step(): warmup uses cur_step
    # (8 updates = 2 epochs: epoch 1 is at 0.5 * (1 + cos(pi / 2)) = 0.5)
    zero = cfg_of(lr=1.0, min_lr=0.0, warmup_start_lr=0.0, warmup_steps=0, epoch_steps=4)
    assert rates(zero, 8) == pytest.approx([0.0, 0.25, 0.5, 0.75, 0.5, 0.5, 0.5, 0.5], abs=1e-12)
    # a warmup longer than an epoch restarts from warmup_lr at the epoch boundary (k=4, s=0)
    long = cfg_of(lr=1.0, min_lr=0.0, warmup_start_lr=0.0, warmup_steps=6, epoch_steps=4)
    assert rates(long, 8) == pytest.approx([0.0, 1 / 6, 2 / 6, 3 / 6, 0.0, 1 / 6, 0.5, 0.5], abs=1e-12)


def test_vqa_rad_released_config_by_hand():
    # vqarad_finetune_stage2.yaml: init_lr 1e-5, min_lr 1e-6, warmup_lr 1e-6, warmup_steps 100,
    # iters_per_epoch 100, max_epoch 50 (5,000 updates); values worked out from optims.py by hand
    cfg = cfg_of(lr=1e-5, min_lr=1e-6, warmup_start_lr=1e-6, warmup_steps=100, epoch_steps=100)
    lr = rates(cfg, 5000)
    table = {
        0: 1e-6,                       # warmup_lr
        50: 5.5e-6,                    # 1e-6 + 9e-6 * 50 / 100
        99: 9.91e-6,                   # 1e-6 + 9e-6 * 99 / 100
        100: 9.991120e-6,              # epoch 1: 1e-6 + 9e-6 * (1 + cos(pi / 50)) / 2
        199: 9.991120e-6,              # constant within the epoch
        2500: 5.5e-6,                  # epoch 25 of 50: cos(pi / 2) = 0
        4999: 1.008880e-6,             # epoch 49: 1e-6 + 9e-6 * (1 + cos(49 pi / 50)) / 2, above min_lr
    }
    for step, expected in table.items():
        assert lr[step] == pytest.approx(expected, rel=1e-6), step
    # a staircase after the warmup: one value per epoch 1..49, never increasing
    after = lr[100:]
    assert len({round(v, 15) for v in after}) == 49 and all(a >= b for a, b in zip(after, after[1:]))
    assert lr[100] == lr[150] and lr[150] > lr[200]


def test_matches_the_released_scheduler_transcribed_for_every_update():
    """The released step(cur_epoch, cur_step) written out (our transcription of optims.py, with an
    optimizer's param group as it uses), run for the stage-1 and IU-Xray settings."""

    def released(max_epoch, iters_per_epoch, min_lr, init_lr, warmup_steps, warmup_start_lr):
        group = {}
        warmup = warmup_steps or iters_per_epoch
        out = []
        for cur_epoch in range(max_epoch):
            for cur_step in range(iters_per_epoch):
                if cur_epoch * iters_per_epoch + cur_step < warmup:
                    group["lr"] = min(init_lr, warmup_start_lr + (init_lr - warmup_start_lr) * cur_step
                                      / max(warmup, 1))
                else:
                    group["lr"] = (init_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * cur_epoch / max_epoch)) + min_lr
                out.append(group["lr"])
        return out

    for max_epoch, ipe, lrs, warmup in [(5, 1000, (1e-5, 1e-6, 1e-6), 1000),   # finetune_stage1.yaml
                                         (4, 100, (3e-5, 1e-6, 1e-5), 100)]:   # iuxray_finetune_stage2.yaml
        init, warm, floor = lrs
        cfg = cfg_of(lr=init, warmup_start_lr=warm, min_lr=floor, warmup_steps=warmup, epoch_steps=ipe)
        assert rates(cfg, max_epoch * ipe) == pytest.approx(released(max_epoch, ipe, floor, init, warmup, warm),
                                                            rel=1e-12)


def test_through_torch_lambda_lr_as_the_training_loop_builds_it():
    cfg = cfg_of(lr=1.0, min_lr=0.0, warmup_start_lr=0.0, warmup_steps=2, epoch_steps=4)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(s, 12, cfg))
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.0, 0.5, 1.0, 1.0] + [0.75] * 4 + [0.25] * 4, abs=1e-12)


def test_epoch_cosine_without_epoch_steps_is_refused_naming_the_key():
    # refused when the recipe loads (a recipe validator) or, at the latest, before the first step
    with pytest.raises(UserError, match=r"train\.epoch_steps"):
        check_schedule(load_recipe("tiny-demo", ["train.scheduler=epoch_cosine"]).train)
    cfg = load_recipe("tiny-demo").train.model_copy(update={"scheduler": "epoch_cosine"})  # not re-validated
    with pytest.raises(UserError, match=r"train\.epoch_steps"):
        check_schedule(cfg)
    with pytest.raises(UserError, match=r"train\.epoch_steps"):
        lr_multiplier(0, 10, cfg)
    check_schedule(load_recipe("tiny-demo").train)  # the other schedules need no epoch_steps


def test_other_schedules_unchanged():
    cfg = load_recipe("tiny-demo", ["train.lr=1e-5", "train.warmup_start_lr=1e-6", "train.min_lr=1e-6",
                                    "train.warmup_steps=10", "train.scheduler=cosine", "train.epoch_steps=5"]).train
    lr = [cfg.lr * lr_multiplier(s, 110, cfg) for s in range(111)]
    assert lr[0] == pytest.approx(1e-6) and lr[10] == pytest.approx(1e-5) and lr[110] == pytest.approx(1e-6)


def test_a_training_run_follows_the_staircase(tmp_path, demo_data):
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", ["train.scheduler=epoch_cosine", "train.epoch_steps=2", "train.max_steps=6",
                                       "train.warmup_steps=1", "train.lr=1e-3", "train.min_lr=1e-4",
                                       "train.warmup_start_lr=0.0", "train.batch_size=2"])
    recipe.data.dir = str(demo_data)
    train(recipe, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    logged = {row["step"]: row["lr"] for row in rows}
    # the row of step n carries the rate of the next update (index n): epochs of 2 over 3 epochs
    def stair(epoch):
        return 1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * epoch / 3))
    assert [logged[n] for n in (1, 2, 3, 4, 5)] == pytest.approx([stair(0), stair(1), stair(1), stair(2), stair(2)])
