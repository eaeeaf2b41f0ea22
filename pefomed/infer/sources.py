"""What to answer: a prepared split (with references), or images from a folder (walked with its
sub-folders) or a single image file."""

from __future__ import annotations

import os
from pathlib import Path

from pefomed.console import console
from pefomed.data.images import IMAGE_SUFFIXES, is_dicom
from pefomed.errors import UserError
from pefomed.records import Sample, read_split


def split_samples(data_dir: str | Path, split: str) -> tuple[list[Sample], Path]:
    return read_split(data_dir, split), Path(data_dir)


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, sub-folders included, sorted by relative path.
    Symlinked folders are not followed (a link cannot make the walk loop or leave the folder)."""
    images, others = [], []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            (images if path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path) else others).append(path)
    key = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    return sorted(images, key=key), sorted(others, key=key)


def folder_samples(source: str | Path, question: str | None) -> tuple[list[Sample], Path]:
    """One sample per image file; ids are paths relative to the folder, so two `image1.png` in
    different studies never collide. Without a question each is a report-generation request.
    `source` may also be one image file."""
    source = Path(source)
    if source.is_file():
        root, images, others = source.parent, [source], []
    elif source.is_dir():
        root = source
        images, others = _walk(source)
    else:
        raise UserError(f"--images {source}: no such folder or image file")
    if not images:
        raise UserError(f"--images {source}: no images (.jpg, .jpeg, .png, .dcm) found"
                        + (f" among its {len(others)} files" if others else ""))
    if others:
        shown = ", ".join(p.relative_to(root).as_posix() for p in others[:3])
        console.print(f"--images: {len(images)} images; {len(others)} other files ignored (e.g. {shown})",
                      highlight=False, markup=False)
    samples = []
    for path in images:
        rel = path.relative_to(root).as_posix()
        samples.append(Sample(id=rel, task="vqa" if question else "report", images=[rel], answer="",
                              question=question))
    return samples, root


def drop_unreadable(samples: list[Sample], root: Path) -> tuple[list[Sample], list[dict]]:
    """--skip-bad: the samples whose every image opens (decoded once here, within the pixel
    limit), and for each other one its id and why it was skipped."""
    from pefomed.data.images import load_image

    kept, skipped = [], []
    for sample in samples:
        try:
            for rel in sample.images:
                load_image(root / rel)
        except UserError as err:
            skipped.append({"id": sample.id, "reason": str(err)})
            continue
        kept.append(sample)
    return kept, skipped
