"""A synthetic, image-conditioned sanity task: "Is there a bright spot in the image?"

Half the images carry a small bright square (a stand-in for a finding) at a random place on a
noisy dark background; the question is the same for every sample, so the answer is only in
the pixels. A model that learns it (held-out accuracy far above the 0.5 of chance) proves that
image features reach the LLM through the projector. It is written as an ordinary prepared
DATA_DIR, so it exercises the same train / infer / score path as real data.

(A "left or right?" variant needs the frozen random vision tower of the tiny model to encode
position and content jointly, which it does too weakly to learn in a CPU test's budget.)
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from pefomed.io import sha256_file, write_json, write_jsonl
from pefomed.records import Sample

QUESTION = "Is there a bright spot in the image?"


def _image(rng: random.Random, with_spot: bool, size: int) -> Image.Image:
    noise = np.array([[rng.randrange(0, 25) for _ in range(size)] for _ in range(size)], dtype=np.uint8)
    pixels = noise + 20
    if with_spot:
        spot = max(size // 5, 2)
        x0, y0 = rng.randrange(0, size - spot), rng.randrange(0, size - spot)
        pixels[y0:y0 + spot, x0:x0 + spot] = 255
    return Image.fromarray(pixels, mode="L").convert("RGB")


def write_bright_spot_dataset(out: str | Path, n_train: int = 256, n_test: int = 100, size: int = 32,
                              seed: int = 0) -> Path:
    """Write DATA_DIR with train/test splits, balanced yes/no, deterministic for a seed."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        samples = []
        for i in range(n):
            answer = "yes" if i % 2 == 0 else "no"
            rel = f"images/{split}_{i:05d}.png"
            _image(rng, answer == "yes", size).save(out / rel)
            samples.append(Sample(id=f"spot-{split}-{i}", task="vqa", images=[rel], question=QUESTION,
                                  answer=answer, answer_type="closed", meta={"question_type": "presence"}))
        write_jsonl(out / f"{split}.jsonl", (s.to_dict() for s in samples))
        splits[split] = {"file": f"{split}.jsonl", "samples": n, "sha256": sha256_file(out / f"{split}.jsonl")}
    write_json(out / "manifest.json", {"manifest_version": 1, "tool": "pefomed", "format": "synthetic-bright-spot",
                                       "source": "generated", "splits": splits, "seed": seed, "skipped": [],
                                       "notes": {"task": QUESTION}})
    return out
