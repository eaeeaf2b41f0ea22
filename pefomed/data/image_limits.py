"""Pixel limits every image reader applies before decoding (PNG/JPEG, DICOM, NIfTI volumes):
below pefomed.data.images and pefomed.data.volumes, which both use them."""

from __future__ import annotations

import os
from pathlib import Path

from pefomed.errors import UserError

# Images with more pixels than this are refused from their header, before any pixel is
# decoded: a 100-byte PNG can declare 100,000 x 100,000 pixels and ask for 30 GB. 100 Mpx is
# over ten times a MIMIC-CXR radiograph (about 3,000 x 3,000). Per call: `max_pixels`
# (prepare --max-image-pixels); for every call: the environment variable below.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "PEFOMED_MAX_IMAGE_PIXELS"


def max_pixels_default() -> int:
    raw = os.environ.get(MAX_PIXELS_ENV)
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{MAX_PIXELS_ENV}={raw[:40]!r}: expected a whole number of pixels") from None
    if value < 1:
        raise UserError(f"{MAX_PIXELS_ENV}={value}: expected a positive number of pixels")
    return value


# every caller has the environment variable; prepare also has its own setting (max_image_pixels),
# which its summary of bad images names (data/prepare.py), so this hint names only what all share
LIMIT_HINT = f"if the image is genuine, raise the limit with the environment variable {MAX_PIXELS_ENV}"


def _check_pixels(path: Path, width: int, height: int, frames: int, limit: int) -> None:
    if width * height * max(frames, 1) > limit:
        what = f"{width} x {height}" + (f" x {frames} frames" if frames > 1 else "")
        raise UserError(f"{path}: image too large ({what} = {width * height * max(frames, 1):,} pixels; "
                        f"the limit is {limit:,}); refused before decoding",
                        hint=LIMIT_HINT)
