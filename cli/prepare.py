"""`pefomed prepare SOURCE --format NAME --out DATA_DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

EXAMPLE = """
Example:

  pefomed prepare data/VQA_RAD --format data-rad --out prepared/vqa-rad

  pefomed prepare data/Slake1.0 --format slake --language en --out prepared/slake

  pefomed prepare data/VQA_RAD --format data-rad --out prepared/vqa-rad --overwrite   # replace it

  pefomed prepare ct_questions.jsonl --format jsonl --series-frames 3 --out prepared/ct   # image: ct/vol.nii.gz
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Read a dataset exactly as it ships and write DATA_DIR (manifest.json + split files + images)." + EXAMPLE)
    def prepare(
        source: Path = typer.Argument(..., help="The dataset as distributed (folder or file)."),
        format: str = typer.Option(..., "--format", "-f", help="Source layout: vqa-rad, data-rad, slake, pathvqa, hf-parquet (vqa-rad-hf, path-vqa-hf, slake-hf), r2gen, openi, roco, captions, pmc-vqa, llava-med, jsonl, csv, folder (docs/datasets.md)."),
        out: Path = typer.Option(..., "--out", "-o", help="DATA_DIR to write (absent or empty; see --overwrite)."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace an existing DATA_DIR; the old one stays whole until the new one is complete."),
        max_image_pixels: Optional[int] = typer.Option(
            None, "--max-image-pixels", min=1,
            help="Refuse images with more pixels than this, from their header, before decoding "
                 "(default 100000000, or PEFOMED_MAX_IMAGE_PIXELS)."),
        drop_frame: bool = typer.Option(False, "--drop-frame", help="data-rad: drop the templated 'frame' rows."),
        language: str = typer.Option("en", "--language", help="slake: en, zh or all."),
        per_image: bool = typer.Option(False, "--per-image", help="r2gen: one sample per image instead of per study."),
        section: str = typer.Option("findings", "--section", help="openi: findings, impression or both."),
        split: Optional[str] = typer.Option(None, "--split", help="Fractions train,val,test for sources without splits."),
        seed: int = typer.Option(0, "--seed", help="Seed for splits made here."),
        images: Optional[Path] = typer.Option(None, "--images", help="Image root, for formats whose annotations live elsewhere."),
        map: Optional[str] = typer.Option(None, "--map", help="jsonl/csv: question=col,answer=col,image=col,..."),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip samples with missing/unreadable images (listed in manifest.json)."),
        image_size: Optional[int] = typer.Option(None, "--image-size", help="Downscale images so the longest side is N px."),
        image_format: Optional[str] = typer.Option(None, "--image-format", help="Convert images to png or jpeg."),
        resplit_by_image: bool = typer.Option(False, "--resplit-by-image",
                                              help="Make a new leakage-free split: samples sharing an image stay together (uses --split, default 0.8,0.1,0.1, and --seed)."),
        multiple_choice: bool = typer.Option(False, "--multiple-choice", help="pmc-vqa: append the lettered choices to the question."),
        series_frames: int = typer.Option(1, "--series-frames", help="NIfTI volume images (.nii, .nii.gz): axial "
                                          "slices each sample shows, evenly spaced in order; 1: the middle slice."),
    ):
        from pefomed.data.formats import PrepareOptions
        from pefomed.data.prepare import ImageOptions, prepare as run_prepare
        from pefomed.data.summary import print_summary
        from pefomed.errors import UserError

        column_map = {}
        for item in filter(None, (map or "").split(",")):
            if "=" not in item:
                raise UserError(f"--map: expected field=column, got {item[:80]!r}")
            key, value = item.split("=", 1)
            column_map[key.strip()] = value.strip()
        options = PrepareOptions(drop_frame=drop_frame, language=language, per_image=per_image, section=section,
                                 split=split, seed=seed, images=images, column_map=column_map, skip_bad=skip_bad,
                                 resplit_by_image=resplit_by_image, multiple_choice=multiple_choice,
                                 series_frames=series_frames)
        manifest = run_prepare(source, format, out, options,
                               ImageOptions(size=image_size, format=image_format, max_pixels=max_image_pixels),
                               overwrite=overwrite)
        print_summary(manifest, out)
