"""Developer tool (not installed): rebuild the package data of the embedded default from the
complete VQA-RAD copy (CC0) in ../shared/datasets/vqa-rad.

Writes pefomed/resources/demo/vqa-rad-mini/ (data-rad layout: trainset.json, testset.json,
images/, downscaled to 96 px) and pefomed/resources/tiny_corpus.txt (the text the tiny model's
tokenizer is trained on). Deterministic: the first N test images in sorted order.
"""

import json
import sys
from pathlib import Path

from PIL import Image

N_IMAGES = 30
SIZE = 96

repo = Path(__file__).resolve().parents[1]
source = Path(sys.argv[1]) if len(sys.argv) > 1 else repo.parent / "shared" / "datasets" / "vqa-rad"
out = repo / "pefomed" / "resources" / "demo" / "vqa-rad-mini"

train = json.loads((source / "trainset.json").read_text())
test = json.loads((source / "testset.json").read_text())
chosen = sorted({r["image_name"] for r in test})[:N_IMAGES]
keep = set(chosen)
(out / "images").mkdir(parents=True, exist_ok=True)
for name in chosen:
    with Image.open(source / "images" / name) as img:
        img = img.convert("L")
        img.thumbnail((SIZE, SIZE))
        img.save(out / "images" / name, quality=90)
for fname, rows in (("trainset.json", train), ("testset.json", test)):
    subset = [r for r in rows if r["image_name"] in keep]
    (out / fname).write_text(json.dumps(subset, indent=1, ensure_ascii=False) + "\n")
    print(fname, len(subset))

lines = []
for row in train + test:
    lines.append(str(row["question"]).strip())
    lines.append(str(row["answer"]).strip())
lines += [
    "Describe the findings of this image.",
    "Is the bright spot on the left or the right?",
    "left right top bottom yes no",
    "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.",
    "Cardiomegaly with mild pulmonary edema. Small bilateral pleural effusions.",
    "0 1 2 3 4 5 6 7 8 9",
]
(repo / "pefomed" / "resources" / "tiny_corpus.txt").write_text("\n".join(lines) + "\n")
(out / "README.md").write_text(
    "# vqa-rad-mini\n\nA subset of VQA-RAD (Lau et al., Scientific Data 2018; CC0 1.0, osf.io/89kps):\n"
    f"the records of {N_IMAGES} test images (all also in train, as VQA-RAD splits by question),\n"
    f"images downscaled to {SIZE} px grayscale JPEG. Built by tools/make_demo_data.py.\n")
