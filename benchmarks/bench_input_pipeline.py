"""Input pipeline: training with DataLoader workers (train.num_workers) against the same run
encoding every batch in the training process (num_workers=0), measured in the same invocation.

The model is small on purpose (a Qwen2-VL with a 1-layer vision tower and a 1-layer LLM, random
weights, built in code) and the processor setting is realistic: Qwen2-VL's image processor at
448 px (patch 14, 2x2 merge: 256 image tokens per image). That is the regime where encoding on the
main process starves the accelerator: the benchmark reports the share of each run's wall time
spent waiting for data (train_log.jsonl's data_wait_s) and samples/s, and the ratios between the
two settings. Both runs see identical batches (tests/train/test_workers.py checks that).

Usage:
  python benchmarks/bench_input_pipeline.py                 # 2 workers, 40 steps of 8 samples
  python benchmarks/bench_input_pipeline.py --workers 4 --steps 80 --json out.json

Numbers depend on the machine's idle cores: report them with the machine's state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "models"))


def build_model(out: Path, image_px: int) -> Path:
    import torch
    from tiny_families import QWEN_SPECIALS, QWEN_TEMPLATE, train_tokenizer  # noqa: E402
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tokenizer = train_tokenizer(QWEN_SPECIALS, eos="<|im_end|>", pad="<|endoftext|>",
                                extra={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                                       "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"})
    pixels = image_px * image_px
    image_processor = Qwen2VLImageProcessor(patch_size=14, merge_size=2, temporal_patch_size=2,
                                            size={"shortest_edge": pixels, "longest_edge": pixels})
    processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=QWEN_TEMPLATE,
                                 video_processor=Qwen2VLVideoProcessor(patch_size=14, merge_size=2,
                                                                       temporal_patch_size=2))
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2VLConfig(
        vision_config=dict(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"))
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(config)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def run(model: Path, data: Path, out: Path, workers: int, steps: int, batch: int) -> dict:
    recipe = out.parent / f"recipe-{workers}.yaml"
    recipe.write_text(json.dumps({
        "model": {"kind": "hf", "name_or_path": str(model)},
        "method": {"name": "lora", "r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
        "data": {"max_length": 1024},
        "train": {"max_steps": steps, "batch_size": batch, "lr": 1e-3, "num_workers": workers,
                  "prefetch_batches": 4, "tensorboard": False, "log_every": 1},
    }))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "pefomed.cli.app", "train", str(recipe), "--data", str(data),
                    "--out", str(out)], check=True, env=env, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in open(out / "train_log.jsonl")]
    timed = rows[2:]  # the first steps include worker start-up and warm caches
    wall = sum(r["elapsed_s"] for r in timed)
    wait = sum(r["data_wait_s"] for r in timed)
    samples = batch * len(timed)
    return {"workers": workers, "steps_timed": len(timed), "samples_per_s": samples / wall,
            "data_wait_fraction": wait / wall, "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-px", type=int, default=448)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from pefomed.data.prepare import prepare
    from pefomed.demo import demo_source

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        prepare(demo_source(), "data-rad", data)
        model = build_model(tmp / "model", args.image_px)
        base = run(model, data, tmp / "run-0", 0, args.steps, args.batch_size)
        lever = run(model, data, tmp / f"run-{args.workers}", args.workers, args.steps, args.batch_size)
    result = {"machine_cpus": os.cpu_count(), "image_px": args.image_px, "baseline": base, "workers": lever,
              "samples_per_s_ratio": lever["samples_per_s"] / base["samples_per_s"],
              "data_wait_fraction": {"without": base["data_wait_fraction"], "with": lever["data_wait_fraction"]}}
    print(f"Qwen2-VL processor at {args.image_px} px, tiny model, batch {args.batch_size}, {base['steps_timed']} "
          f"timed steps, {os.cpu_count()} CPUs")
    for name, r in (("num_workers=0", base), (f"num_workers={args.workers}", lever)):
        print(f"  {name:>14}: {r['samples_per_s']:8.2f} samples/s, waiting for data {100 * r['data_wait_fraction']:5.1f}% "
              f"of the time")
    print(f"  ratio (workers / none): {result['samples_per_s_ratio']:.2f}x samples/s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
