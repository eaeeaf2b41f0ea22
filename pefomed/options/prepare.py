"""`pefomed prepare`'s options, declared once (pefomed.options.declare).

PrepareOptions: what the format readers read (pefomed.data.formats: each uses the ones that concern
its format). ImageOptions: what prepare does to the images. PrepareCommand: the command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.errors import UserError
from pefomed.options.declare import Options, nested, option

IMAGE_FORMATS = ("png", "jpeg")
MAX_SERIES_FRAMES = 64  # slices of one volume in one sample: more would not fit any model's context
FORMATS_HELP = ("vqa-rad, data-rad, slake, pathvqa, hf-parquet (vqa-rad-hf, path-vqa-hf, slake-hf), r2gen, openi, "
                "roco, captions, pmc-vqa, llava-med, jsonl, csv, folder (docs/datasets.md)")


@dataclass(kw_only=True)
class PrepareOptions(Options):
    """Every reader option; each reader uses the ones that concern its format."""

    drop_frame: bool = option(False, "data-rad: drop the templated 'frame' rows.")
    language: str = option("en", "slake: en, zh or all.")  # slake's reader lists its choices
    per_image: bool = option(False, "r2gen: one sample per image instead of per study.")
    section: str = option("findings", "openi: findings, impression or both.")  # openi's reader lists its choices
    split: str | None = option(None, "Fractions train,val,test for sources without splits.")  # "0.7,0.1,0.2"
    seed: int = option(0, "Seed for splits made here.", low=0)
    images: Path | None = option(None, "Image root, for formats whose annotations live elsewhere.")
    column_map: dict = option(help="jsonl/csv: {field: column} (the command's `map`).", cli=False, factory=dict)
    skip_bad: bool = option(False, "Skip samples with missing/unreadable images (listed in manifest.json).")
    resplit_by_image: bool = option(False, "Make a new leakage-free split: samples sharing an image stay together "
                                           "(uses `split`, default 0.8,0.1,0.1, and `seed`).")
    multiple_choice: bool = option(False, "pmc-vqa: append the lettered choices to the question.")
    series_frames: int = option(1, "NIfTI volume images (.nii, .nii.gz): axial slices each sample shows, evenly "
                                   "spaced in order; 1: the middle slice.", low=1, high=MAX_SERIES_FRAMES)


@dataclass(kw_only=True)
class ImageOptions(Options):
    """What prepare does to each image (None keeps the original)."""

    max_image_pixels: int | None = option(None, "Refuse images with more pixels than this, from their header, "
                                                "before decoding (default 100000000, or PEFOMED_MAX_IMAGE_PIXELS).",
                                          low=1)
    image_size: int | None = option(None, "Downscale images so the longest side is N px.", low=8, high=100_000)
    image_format: str | None = option(None, "Convert images to png or jpeg.", choices=IMAGE_FORMATS)


def parse_column_map(text: str | None) -> dict[str, str]:
    """`map`'s "question=col,answer=col" as {field: column}."""
    column_map = {}
    for item in filter(None, (text or "").split(",")):
        if "=" not in item:
            raise UserError(f"`map`: expected field=column, got {item[:80]!r}")
        key, value = item.split("=", 1)
        column_map[key.strip()] = value.strip()
    return column_map


@dataclass(kw_only=True)
class PrepareCommand(Options):
    """`pefomed prepare SOURCE --format NAME --out DATA_DIR`."""

    source: Path = option(help="The dataset as distributed (folder or file).", positional=True)
    format: str = option(help=f"Source layout: {FORMATS_HELP}.", short="-f")  # the readers' registry checks it
    out: Path = option(help="DATA_DIR to write (absent or empty; see `overwrite`).", short="-o")
    overwrite: bool = option(False, "Replace an existing DATA_DIR; the old one stays whole until the new one is "
                                    "complete.")
    map: str | None = option(None, "jsonl/csv: question=col,answer=col,image=col,...")
    image_options: ImageOptions = nested(ImageOptions)
    options: PrepareOptions = nested(PrepareOptions)

    def reader_options(self) -> PrepareOptions:
        """The reader options with `map` read into column_map."""
        import dataclasses

        return dataclasses.replace(self.options, column_map=parse_column_map(self.map))
