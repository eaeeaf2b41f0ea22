"""A synthetic, image-conditioned sanity task: "Is the bright spot on the left or the right?"

The answer is only in the pixels, so a model that learns it (held-out accuracy far above the
0.5 of chance) proves that image features reach the LLM through the projector. Written as an
ordinary prepared DATA_DIR, so it exercises the same train / infer / score path as real data.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from pefomed.io import sha256_file, write_json, write_jsonl
from pefomed.records import Sample

QUESTION = "Is the bright spot on the left or the right?"


def _image(rng: random.Random, side: str, size: int) -> Image.Image:
    pixels = np.full((size, size), 20, dtype=np.uint8)
    pixels += np.array([[rng.randrange(0, 25) for _ in range(size)] for _ in range(size)], dtype=np.uint8)
    spot = max(size // 5, 2)
    half = size // 2
    x0 = rng.randrange(0, half - spot) + (half if side == "right" else 0)
    y0 = rng.randrange(0, size - spot)
    pixels[y0:y0 + spot, x0:x0 + spot] = 255
    return Image.fromarray(pixels, mode="L").convert("RGB")


def write_bright_spot_dataset(out: str | Path, n_train: int = 200, n_test: int = 100, size: int = 32,
                              seed: int = 0) -> Path:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        samples = []
        for i in range(n):
            side = "left" if i % 2 == 0 else "right"
            rel = f"images/{split}_{i:05d}.png"
            _image(rng, side, size).save(out / rel)
            samples.append(Sample(id=f"spot-{split}-{i}", task="vqa", images=[rel], question=QUESTION,
                                  answer=side, answer_type="closed", meta={"question_type": "position"}))
        write_jsonl(out / f"{split}.jsonl", (s.to_dict() for s in samples))
        splits[split] = {"file": f"{split}.jsonl", "samples": n, "sha256": sha256_file(out / f"{split}.jsonl")}
    write_json(out / "manifest.json", {"manifest_version": 1, "tool": "pefomed", "format": "synthetic-bright-spot",
                                       "source": "generated", "splits": splits, "seed": seed, "skipped": [],
                                       "notes": {"task": QUESTION}})
    return out
