"""Frozen vision-feature cache (train.feature_cache): the time of a later epoch trained from the
cache against the same epoch with the vision tower run again, measured in the same invocation.

The model is the built-in tiny LLaVA resized so that its vision tower is a realistic share of the
step: a CLIP tower at 224 px (patch 16: 196 patches + CLS) that is larger than its LLM, as in
small-LLM medical VLMs (a SigLIP-400M tower next to a 1-4B LLM) or PeFoMed's EVA ViT-g next to a
LoRA-adapted Llama-2 (whose backward skips the frozen weights' gradients). Both runs train two
epochs on the same synthetic DATA_DIR (every image distinct), same seed and batches; the cached
run computes and stores every image's tower output in epoch 1 and reads it in epoch 2.

Both runs train in this process (train.num_workers 0, ZeRO-2, fp32) and every step is timed (wall
clock, between train_log.jsonl rows; step 1 also warms up and is left out). The headline is epoch
2's median step time cached / uncached, which is the epoch's time ratio without the few steps a
burst of load elsewhere stretches; the whole-epoch ratio, the epoch-1 overhead of storing, and a
check that both runs logged the same losses are printed too.

Usage:
  python benchmarks/bench_feature_cache.py                      # 64 samples, batch 8, 2 epochs
  python benchmarks/bench_feature_cache.py --repeat 2 --json out.json  # on a busy machine
  python benchmarks/bench_feature_cache.py --samples 96 --vision-layers 8

Numbers depend on the machine's idle cores (other processes slow either run): report them with
the machine's state (`uptime`); --repeat alternates the two settings and keeps the least
disturbed run of each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def run(data: Path, out: Path, args, cache: bool) -> dict:
    """Train two epochs in this process and time each step (wall clock, between train_log rows)."""
    from pefomed.recipe import load_recipe
    from pefomed.train import log as run_log
    from pefomed.train.loop import train

    recipe = load_recipe("tiny-demo", [
        "model.kind=tiny", f"model.tiny.image_size={args.image_px}", "model.tiny.patch_size=16",
        f"model.tiny.vision_hidden={args.vision_hidden}", f"model.tiny.vision_layers={args.vision_layers}",
        f"model.tiny.text_hidden={args.text_hidden}", f"model.tiny.text_layers={args.text_layers}",
        "model.tiny.heads=4", "method.r=8", "method.alpha=16", "method.dropout=0.0", "data.max_length=512",
        "train.epochs=2", f"train.batch_size={args.batch_size}", "train.lr=1e-3", "train.tensorboard=false",
        "train.log_every=1", "train.length_prepass=false", "train.warmup_steps=0", "train.save_every=1000",
        f"train.feature_cache={str(cache).lower()}", "train.seed=0"])
    recipe.data.dir = str(data)
    marks = []  # (row, wall clock) when each step's row is written
    original = run_log.RunLog.train_row

    def timed_row(self, row):
        marks.append((row, time.perf_counter()))
        original(self, row)

    run_log.RunLog.train_row = timed_row
    try:
        start = time.perf_counter()
        train(recipe, out)
    finally:
        run_log.RunLog.train_row = original
    steps = len(marks) // 2
    wall = [b[1] - a[1] for a, b in zip(marks, marks[1:])]  # steps 2, 3, ...
    first, second = slice(0, steps - 1), slice(steps - 1, None)
    trainable = json.loads((out / "trainable.json").read_text())["components"]
    return {"epoch1_s": sum(wall[first]), "epoch2_s": sum(wall[second]),
            "epoch1_median_step_s": statistics.median(wall[first]),
            "epoch2_median_step_s": statistics.median(wall[second]), "epoch2_step_s": wall[second],
            "setup_s": marks[0][1] - start, "steps_per_epoch": steps, "losses": [m[0]["loss"] for m in marks],
            "hits": sum(m[0].get("feature_cache_hits", 0) for m in marks[steps:]),
            "misses": sum(m[0].get("feature_cache_misses", 0) for m in marks[:steps]),
            "params": {k: v["total"] for k, v in trainable.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-px", type=int, default=224)
    parser.add_argument("--vision-hidden", type=int, default=192)
    parser.add_argument("--vision-layers", type=int, default=6)
    parser.add_argument("--text-hidden", type=int, default=128)
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="run each setting this many times (alternating); "
                                                                  "the least disturbed run of each is compared")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from pefomed.data.synthetic import write_bright_spot_dataset

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_bright_spot_dataset(tmp / "data", n_train=args.samples, n_test=2, size=64)
        plains, cacheds = [], []
        for i in range(args.repeat):  # alternated, so a burst of load elsewhere hits both settings
            plains.append(run(data, tmp / f"plain-{i}", args, cache=False))
            cacheds.append(run(data, tmp / f"cached-{i}", args, cache=True))
    # the least disturbed run of each setting: the smallest median epoch-2 step
    plain = min(plains, key=lambda r: r["epoch2_median_step_s"])
    cached = min(cacheds, key=lambda r: r["epoch2_median_step_s"])
    same = all(abs(a - b) <= 1e-5 * max(1.0, abs(a)) for a, b in zip(plain["losses"], cached["losses"]))
    result = {"machine_cpus": os.cpu_count(), "load_average": os.getloadavg(), "args": vars(args) | {"json": None},
              "epoch2_median_step_s_all": {"plain": [r["epoch2_median_step_s"] for r in plains],
                                           "cached": [r["epoch2_median_step_s"] for r in cacheds]},
              "params": plain["params"], "plain": plain, "cached": cached,
              "epoch2_ratio": cached["epoch2_median_step_s"] / plain["epoch2_median_step_s"],
              "epoch2_sum_ratio": cached["epoch2_s"] / plain["epoch2_s"],
              "epoch1_ratio": cached["epoch1_median_step_s"] / plain["epoch1_median_step_s"], "same_losses": same}
    params = ", ".join(f"{k} {v:,}" for k, v in sorted(plain["params"].items()))
    print(f"tiny LLaVA at {args.image_px} px ({params} parameters), {args.samples} samples, batch "
          f"{args.batch_size}, {plain['steps_per_epoch']} steps per epoch, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}")
    for name, r in (("uncached", plain), ("cached", cached)):
        print(f"  {name:>9}: median step epoch 1 {r['epoch1_median_step_s']:6.3f} s, epoch 2 "
              f"{r['epoch2_median_step_s']:6.3f} s; epoch 2 in all {r['epoch2_s']:6.2f} s")
    print(f"  epoch 2 cached / uncached: x{result['epoch2_ratio']:.2f} (median step), "
          f"x{result['epoch2_sum_ratio']:.2f} (whole epoch); {cached['hits']} images read from the cache")
    print(f"  epoch 1 cached / uncached: x{result['epoch1_ratio']:.2f} (median step; computing and storing "
          f"{cached['misses']} images)")
    print(f"  same losses: {same}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
