"""`pefomed prepare`: read a raw dataset, check it, and write DATA_DIR.

DATA_DIR = manifest.json + {train,val,test}.jsonl + images/ (docs/formats.md). Images are
checked (inside the source, present, readable) and copied (hard-linked when possible) to
DATA_DIR/images/ under their path relative to the source root, or converted with
`image_size` / `image_format`. The output is deterministic: the same input gives byte-identical
split files and manifest apart from `created_at`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pefomed import __version__
from pefomed.console import track
from pefomed.data.formats import PrepareOptions, SourceSplits, get_reader
from pefomed.data.images import load_image
from pefomed.errors import UserError
from pefomed.io import sha256_file, write_json, write_jsonl
from pefomed.records import SPLITS, Sample

MANIFEST_VERSION = 1


@dataclass
class ImageOptions:
    size: int | None = None  # longest side in pixels; None keeps the original
    format: str | None = None  # "png" | "jpeg"; None keeps the original file


def safe_source_path(path: str, root: Path, sample_id: str) -> Path:
    """Reject image paths that escape the dataset root (absolute elsewhere, or through '..')."""
    candidate = Path(path)
    if ".." in candidate.parts:
        raise UserError(f"sample {sample_id}: image path {path!r} contains '..' and could escape {root}")
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UserError(f"sample {sample_id}: image path {path!r} is outside the dataset root {root}")
    return resolved


def _place_image(src: Path, dest: Path, images: ImageOptions) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if images.size is None and images.format is None:
        if dest.exists():
            return
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        return
    img = load_image(src)
    if images.size:
        img.thumbnail((images.size, images.size))
    tmp = dest.with_name(f".{dest.name}.tmp")
    img.save(tmp, format="PNG" if dest.suffix == ".png" else "JPEG", **({"quality": 95} if dest.suffix != ".png" else {}))
    os.replace(tmp, dest)


def prepare(source: str | Path, fmt: str, out: str | Path, options: PrepareOptions | None = None,
            images: ImageOptions | None = None) -> dict:
    """Prepare `source` (in format `fmt`) into `out`; return the manifest."""
    options = options or PrepareOptions()
    images = images or ImageOptions()
    source = Path(source)
    out = Path(out)
    if not source.exists():
        raise UserError(f"{source}: no such file or folder")
    if out.resolve() == source.resolve() or source.resolve() in out.resolve().parents:
        raise UserError(f"{out}: the output folder must not be inside the source {source}")
    if images.format not in (None, "png", "jpeg"):
        raise UserError(f"--image-format must be png or jpeg, got {images.format!r}")
    read: SourceSplits = get_reader(fmt)(source, options)
    root = (read.root or (source if source.is_dir() else source.parent)).resolve()

    skipped = list(read.skipped)
    kept: dict[str, list[Sample]] = {}
    problems: list[str] = []
    image_map: dict[Path, str] = {}  # source image -> path relative to DATA_DIR
    all_samples = [(split, s) for split in SPLITS for s in read.splits.get(split, [])]
    unknown = set(read.splits) - set(SPLITS)
    if unknown:
        raise RuntimeError(f"reader for {fmt} returned unknown splits {unknown}")
    readable: dict[Path, str | None] = {}  # source image -> None if fine, else the reason
    for split, sample in track(all_samples, "checking images"):
        reasons = []
        new_paths = []
        for path in sample.images:
            src = safe_source_path(path, root, sample.id)
            if src not in readable:
                if not src.is_file():
                    readable[src] = "image not found"
                else:
                    try:
                        load_image(src)
                        readable[src] = None
                    except UserError as err:
                        readable[src] = str(err).split(": ", 1)[-1]
            if readable[src]:
                reasons.append(f"{readable[src]}: {src}")
                continue
            if src not in image_map:
                rel = src.relative_to(root)
                if images.format:
                    rel = rel.with_suffix(".png" if images.format == "png" else ".jpg")
                image_map[src] = str(Path("images") / rel)
            new_paths.append(image_map[src])
        if reasons:
            problems.append(f"{split} {sample.id}: {'; '.join(reasons)}")
            skipped.append({"id": sample.id, "split": split, "reason": "; ".join(reasons)})
            continue
        sample.images = new_paths
        kept.setdefault(split, []).append(sample)

    if problems and not options.skip_bad:
        listing = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise UserError(f"{len(problems)} sample(s) with missing or unreadable images:\n  {listing}",
                        hint="fix the files, or pass --skip-bad to skip these samples (they are listed in manifest.json)")
    if not any(kept.values()):
        raise UserError(f"{source}: no usable samples were found")

    out.mkdir(parents=True, exist_ok=True)
    for src, rel in track(sorted(image_map.items(), key=lambda kv: kv[1]), "writing images"):
        _place_image(src, out / rel, images)

    split_files = {}
    for split in SPLITS:
        if kept.get(split):
            path = out / f"{split}.jsonl"
            write_jsonl(path, (s.to_dict() for s in kept[split]))
            split_files[split] = {"file": path.name, "sha256": sha256_file(path), "samples": len(kept[split])}
        else:
            stale = out / f"{split}.jsonl"
            if stale.exists():
                stale.unlink()

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "tool": "pefomed",
        "tool_version": __version__,
        "format": fmt,
        "source": str(source.resolve()),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(options).items()},
        "image_options": vars(images),
        "splits": split_files,
        "counts": summarize(kept, out),
        "notes": read.notes,
        "skipped": skipped,
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def summarize(kept: dict[str, list[Sample]], out: Path) -> dict:
    """Counts per split x task x answer type, vocabulary size, duplicates and leakage."""
    counts: dict = {"per_split": {}, "answer_vocabulary": 0}
    answers = set()
    image_hash: dict[str, str] = {}
    for split, samples in kept.items():
        per = Counter()
        for s in samples:
            per[f"{s.task}/{s.answer_type or '-'}"] += 1
            answers.add(s.answer.strip().lower())
        counts["per_split"][split] = {"total": len(samples), **dict(sorted(per.items()))}
    counts["answer_vocabulary"] = len(answers)

    def content_hash(rel: str) -> str:
        if rel not in image_hash:
            image_hash[rel] = hashlib.sha256((out / rel).read_bytes()).hexdigest()
        return image_hash[rel]

    images_by_split = {split: {content_hash(p) for s in samples for p in s.images} for split, samples in kept.items()}
    all_paths = {p for samples in kept.values() for s in samples for p in s.images}
    hashes = Counter(content_hash(p) for p in all_paths)
    counts["images"] = len(all_paths)
    counts["duplicate_images"] = sum(n - 1 for n in hashes.values() if n > 1)
    keys = Counter((s.task, tuple(s.images), s.text_input.strip().lower(), s.answer.strip().lower())
                   for samples in kept.values() for s in samples)
    counts["duplicate_samples"] = sum(n - 1 for n in keys.values() if n > 1)
    counts["empty_questions"] = sum(1 for samples in kept.values() for s in samples if s.task == "vqa" and not s.text_input.strip())
    counts["empty_answers"] = sum(1 for samples in kept.values() for s in samples if not s.answer.strip())
    if "test" in images_by_split and "train" in images_by_split:
        counts["test_images_in_train"] = len(images_by_split["test"] & images_by_split["train"])
        counts["test_images"] = len(images_by_split["test"])
    return counts
