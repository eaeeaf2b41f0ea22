"""The table `pefomed prepare` prints from a manifest."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pefomed.console import console


def print_summary(manifest: dict, out: Path) -> None:
    counts = manifest["counts"]
    table = Table(title=f"{manifest['format']} -> {out}")
    kinds = sorted({k for per in counts["per_split"].values() for k in per if k != "total"})
    table.add_column("split")
    for kind in kinds:
        table.add_column(kind, justify="right")
    table.add_column("total", justify="right")
    for split, per in counts["per_split"].items():
        table.add_row(split, *(str(per.get(k, 0)) for k in kinds), str(per["total"]))
    console.print(table)
    facts = [
        f"answer vocabulary: {counts['answer_vocabulary']}",
        f"images: {counts['images']} (duplicated by content: {counts['duplicate_images']})",
        f"duplicate samples: {counts['duplicate_samples']}",
        f"empty questions: {counts['empty_questions']}, empty answers: {counts['empty_answers']}",
    ]
    if "test_images_in_train" in counts:
        facts.append(f"leakage: {counts['test_images_in_train']} of {counts['test_images']} test images also appear in train")
    if manifest["skipped"]:
        facts.append(f"skipped: {len(manifest['skipped'])} samples (listed in manifest.json)")
    for fact in facts:
        console.print(f"  {fact}")
