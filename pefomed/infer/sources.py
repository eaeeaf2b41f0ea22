"""What to answer: a prepared split (with references) or a plain folder of images."""

from __future__ import annotations

from pathlib import Path

from pefomed.data.images import list_image_files
from pefomed.records import Sample, read_split


def split_samples(data_dir: str | Path, split: str) -> tuple[list[Sample], Path]:
    return read_split(data_dir, split), Path(data_dir)


def folder_samples(folder: str | Path, question: str | None) -> tuple[list[Sample], Path]:
    """One sample per image file; without a question each is a report-generation request."""
    folder = Path(folder)
    samples = []
    for path in list_image_files(folder):
        samples.append(Sample(id=path.name, task="vqa" if question else "report", images=[path.name],
                              answer="", question=question))
    return samples, folder
