"""`pefomed infer` vs a plain sequential `model.generate` loop over the same images, same run.

Both sides load the same model source and answer the same question about the same folder of
images with greedy decoding and the same max_new_tokens:

- pefomed: `pefomed.infer.run.infer` (what `pefomed infer SOURCE --images FOLDER --question ...`
  runs: prompt-length-grouped batches, KV cache, resumable PRED.jsonl written in input order);
- baseline: for each image, PIL open, the processor's chat template and encoding, one
  `model.generate` call, decode (the loop a model card shows).

Each side's time includes loading the model. Printed: samples/s of each, the ratio, and the share
of answers that agree (greedy decoding: batched generation should equal one-by-one).

Worker column: `pefomed infer` runs twice more in the same process, without and with `--workers N`
(images decoded and prompts encoded in DataLoader worker processes ahead of the model); both times
exclude loading the model (loaded once before), and the two PRED.jsonl files must be identical.
The images are `--image-size` px noise PNGs (default 512, where decoding costs something). Usage:

    python benchmarks/bench_infer.py [--n 128] [--batch-size 16] [--max-new-tokens 16] [--source tiny-demo]
                                     [--workers 2] [--image-size 512]

--source takes any `pefomed infer` SOURCE (a model folder on a GPU machine, for instance).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

QUESTION = "Is there an abnormality in this image?"


def make_images(folder: Path, n: int, side: int = 512) -> list[Path]:
    """n noise RGB images of about `side` px (three sizes) in two sub-folders (deterministic):
    noise does not compress, so each PNG costs a real decode."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"study{i % 2}" / f"image{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (side + 16 * (i % 3), side + 16 * (i % 2))
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def baseline(source: str, folder: Path, paths: list[Path], max_new_tokens: int) -> tuple[float, dict[str, str]]:
    import torch
    from PIL import Image

    from pefomed.models.source import load_source, resolve_source

    t0 = time.perf_counter()
    _, bundle = load_source(resolve_source(source))
    model, processor = bundle.model, bundle.processor
    device = next(model.parameters()).device
    dtype = next(p for p in model.parameters() if torch.is_floating_point(p)).dtype
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    answers = {}
    with torch.inference_mode():
        for path in paths:
            image = Image.open(path).convert("RGB")
            enc = processor(images=[image], text=prompt, return_tensors="pt")
            enc = {k: (v.to(device, dtype) if torch.is_floating_point(v) else v.to(device)) for k, v in enc.items()}
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
            text = processor.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            answers[path.relative_to(folder).as_posix()] = text.strip()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, answers


def pefomed_infer(source: str, folder: Path, out: Path, batch_size: int, max_new_tokens: int) -> tuple[float, dict]:
    from pefomed.infer.run import InferOptions, infer

    t0 = time.perf_counter()
    infer(source, out, images=folder, question=QUESTION,
          options=InferOptions(batch_size=batch_size, max_new_tokens=max_new_tokens))
    elapsed = time.perf_counter() - t0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return elapsed, {row["id"]: row["prediction"] for row in rows}


def with_and_without_workers(source: str, folder: Path, tmp: Path, batch_size: int, max_new_tokens: int,
                             workers: int) -> tuple[float, float, bool]:
    """Seconds of predict() without workers and with `workers`, the model loaded once before and
    warmed up (so only decoding, encoding and generation are timed, worker start-up included), and
    whether the two files are identical."""
    from pefomed.infer.generate import predict
    from pefomed.infer.sources import folder_samples
    from pefomed.models.source import load_source, resolve_source

    recipe, bundle = load_source(resolve_source(source))
    samples, root = folder_samples(folder, QUESTION)
    # an untimed batch first: the first generate call pays one-off costs neither side should carry
    predict(samples[:batch_size], root, recipe, bundle, tmp / "warm-up.jsonl", batch_size=batch_size,
            max_new_tokens=max_new_tokens, with_references=False)
    times = []
    for n_workers in (0, workers):
        out = tmp / f"workers{n_workers}.jsonl"
        t0 = time.perf_counter()
        predict(samples, root, recipe, bundle, out, batch_size=batch_size, max_new_tokens=max_new_tokens,
                with_references=False, num_workers=n_workers)
        times.append(time.perf_counter() - t0)
    same = (tmp / "workers0.jsonl").read_bytes() == (tmp / f"workers{workers}.jsonl").read_bytes()
    return times[0], times[1], same


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--source", default="tiny-demo")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--skip-loop", action="store_true", help="only the worker column")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        folder = Path(tmp) / "images"
        paths = make_images(folder, args.n, args.image_size)
        if not args.skip_loop:
            t_base, base = baseline(args.source, folder, paths, args.max_new_tokens)
            t_ours, ours = pefomed_infer(args.source, folder, Path(tmp) / "pred.jsonl", args.batch_size,
                                         args.max_new_tokens)
        t_plain, t_workers, same_file = with_and_without_workers(args.source, folder, Path(tmp), args.batch_size,
                                                                 args.max_new_tokens, args.workers)
    print(f"images: {args.n} (~{args.image_size} px noise PNG); source: {args.source}; "
          f"max_new_tokens {args.max_new_tokens}; greedy")
    if not args.skip_loop:
        same = sum(ours.get(k) == v for k, v in base.items())
        print(f"plain sequential generate loop: {t_base:.2f} s, {args.n / t_base:.1f} samples/s (model load included)")
        print(f"pefomed infer, batch {args.batch_size}:      {t_ours:.2f} s, {args.n / t_ours:.1f} samples/s "
              f"(model load included)")
        print(f"ratio pefomed / loop samples/s: {t_base / t_ours:.2f}x; answers equal: {same}/{args.n}")
    print(f"pefomed infer, no decoding workers: {t_plain:.2f} s, {args.n / t_plain:.1f} samples/s (model loaded)")
    print(f"pefomed infer, --workers {args.workers}:          {t_workers:.2f} s, {args.n / t_workers:.1f} samples/s "
          f"(model loaded)")
    print(f"ratio workers / none samples/s: {t_plain / t_workers:.2f}x; PRED.jsonl identical: {same_file}")


if __name__ == "__main__":
    main()
