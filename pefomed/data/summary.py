"""The table `pefomed prepare` prints from a manifest."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from pefomed.console import console
from pefomed.options import flag_of


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
        f"images: {counts['images']} (duplicated by content: {counts['duplicate_images']}; "
        f"missing: {counts.get('images_missing', 0)}, unreadable: {counts.get('images_unreadable', 0)})",
        f"duplicate samples: {counts['duplicate_samples']}",
        f"empty questions: {counts['empty_questions']}, empty answers: {counts['empty_answers']}",
    ]
    for held_out in ("val", "test"):
        if f"{held_out}_images_in_train" in counts:
            facts.append(f"leakage: {counts[f'{held_out}_images_in_train']} of {counts[f'{held_out}_images']} "
                         f"{held_out} images also appear in train")
    if counts.get("test_images_in_train"):
        facts.append(f"  (use {flag_of('prepare', 'resplit_by_image')} {flag_of('prepare', 'seed')} N for a split "
                     "without shared images)")
    if manifest["skipped"]:
        facts.append(f"skipped: {len(manifest['skipped'])} samples (listed in manifest.json)")
    for key, note in sorted(manifest.get("notes", {}).items()):
        if isinstance(note, str):
            facts.append(f"{key}: {note}")
    for fact in facts:
        console.print(f"  {fact}")
