"""recipes/pefomed-paper/ carry the released run settings of github.com/jinlHe/PeFoMed,
pefomed/projects/pefomed/*.yaml (run.* keys), as cited in docs/pefomed-paper.md: run length =
max_epoch x iters_per_epoch optimizer steps, the per-epoch cosine (epoch_steps = iters_per_epoch),
per-GPU batch on 2 GPUs, warmup, seed, lr triple, amp (fp16), no clipping, greedy decoding with
300 new tokens."""

from pathlib import Path

import pytest

from pefomed.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2] / "recipes" / "pefomed-paper"
# stem: (max_epoch, iters_per_epoch, batch_size_train per GPU, warmup_steps, (init_lr, warmup_lr, min_lr))
RELEASED = {
    "stage1-roco": (5, 1000, 100, 1000, (1e-5, 1e-6, 1e-6)),        # finetune_stage1.yaml
    "stage2-vqa-rad": (50, 100, 1, 100, (1e-5, 1e-6, 1e-6)),        # vqarad_finetune_stage2.yaml
    "stage2-slake": (50, 100, 1, 100, (1e-5, 1e-6, 1e-6)),          # slake_finetune_stage2.yaml
    "stage2-pathvqa": (50, 100, 1, 100, (1e-5, 1e-6, 1e-6)),        # pathvqa_finetune_stage2.yaml
    "stage2-iu-xray": (4, 100, 1, 100, (3e-5, 1e-6, 1e-5)),         # iuxray_finetune_stage2.yaml
}


@pytest.mark.parametrize("stem", sorted(RELEASED))
def test_released_run_settings(stem):
    max_epoch, per_epoch, per_gpu, warmup, lrs = RELEASED[stem]
    r = load_recipe(ROOT / f"{stem}.yaml")
    t = r.train
    assert (t.max_steps, t.batch_size, t.grad_accum, t.warmup_steps, t.seed) == (max_epoch * per_epoch, per_gpu, 1,
                                                                                 warmup, 42)
    # run.lr_sched linear_warmup_cosine_lr with run.iters_per_epoch: the schedule's max_epoch is
    # max_steps / epoch_steps, the released run.max_epoch
    assert (t.scheduler, t.epoch_steps, t.max_steps // t.epoch_steps) == ("epoch_cosine", per_epoch, max_epoch)
    assert (t.lr, t.warmup_start_lr, t.min_lr) == lrs
    assert t.precision == "fp16" and t.max_grad_norm is None and not t.gradient_checkpointing
    assert (r.infer.max_new_tokens, r.infer.num_beams, r.infer.temperature) == (300, 1, 0.0)
    text = (ROOT / f"{stem}.yaml").read_text()
    assert "NOT checked" not in text and "world_size 2" in text
