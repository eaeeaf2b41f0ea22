"""`pefomed infer` vs a plain sequential `model.generate` loop over the same images, same run.

Both sides load the same model source and answer the same question about the same folder of
images with greedy decoding and the same max_new_tokens:

- pefomed: `pefomed.infer.run.infer` (what `pefomed infer SOURCE --images FOLDER --question ...`
  runs: prompt-length-grouped batches, KV cache, resumable PRED.jsonl written in input order);
- baseline: for each image, PIL open, the processor's chat template and encoding, one
  `model.generate` call, decode (the loop a model card shows).

Each side's time includes loading the model. Printed: samples/s of each, the ratio, and the share
of answers that agree (greedy decoding: batched generation should equal one-by-one). Usage:

    python benchmarks/bench_infer.py [--n 128] [--batch-size 16] [--max-new-tokens 16] [--source tiny-demo]

--source takes any `pefomed infer` SOURCE (a model folder on a GPU machine, for instance).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

QUESTION = "Is there an abnormality in this image?"


def make_images(folder: Path, n: int) -> list[Path]:
    """n small RGB images of a few sizes in two sub-folders (deterministic)."""
    from PIL import Image

    paths = []
    for i in range(n):
        path = folder / f"study{i % 2}" / f"image{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = (32 + 16 * (i % 3), 32 + 16 * (i % 2))
        Image.new("RGB", size, ((i * 37) % 256, (i * 61) % 256, (i * 89) % 256)).save(path)
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--source", default="tiny-demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-infer-") as tmp:
        folder = Path(tmp) / "images"
        paths = make_images(folder, args.n)
        t_base, base = baseline(args.source, folder, paths, args.max_new_tokens)
        t_ours, ours = pefomed_infer(args.source, folder, Path(tmp) / "pred.jsonl", args.batch_size,
                                     args.max_new_tokens)
    same = sum(ours.get(k) == v for k, v in base.items())
    print(f"images: {args.n}; source: {args.source}; max_new_tokens {args.max_new_tokens}; greedy")
    print(f"plain sequential generate loop: {t_base:.2f} s, {args.n / t_base:.1f} samples/s (model load included)")
    print(f"pefomed infer, batch {args.batch_size}:      {t_ours:.2f} s, {args.n / t_ours:.1f} samples/s "
          f"(model load included)")
    print(f"ratio pefomed / loop samples/s: {t_base / t_ours:.2f}x; answers equal: {same}/{args.n}")


if __name__ == "__main__":
    main()
