"""The one image loader used by prepare and by `infer --images`: JPEG/PNG through Pillow,
DICOM through pydicom. Every image comes out as an 8-bit RGB PIL image.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pefomed.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm", ".dicom"}


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale any numeric array linearly to 0..255 (min to 0, max to 255)."""
    array = array.astype(np.float64)
    low, high = float(np.min(array)), float(np.max(array))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.clip((array - low) / (high - low) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def load_dicom(path: Path | str, frame: int | None = None, data: bytes | None = None) -> Image.Image:
    """Modality LUT (rescale slope/intercept), then the VOI window, MONOCHROME1 inverted.

    Multi-frame files: `frame` if given, else the middle frame (frames // 2), so the same file
    always gives the same picture. Colour data comes out of pydicom already as RGB (it converts
    YBR itself), palette colour goes through the palette. `data` reads the file from bytes
    (images embedded in annotation files); `path` then only names it in messages.
    """
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path)
    except Exception as err:  # pydicom raises several types for damaged files
        raise UserError(f"{path}: unreadable DICOM ({err})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UserError(f"{path}: DICOM file has no pixel data")
    try:
        pixels = ds.pixel_array
    except Exception as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        # pydicom's message lists the handlers (gdcm, pylibjpeg, pyjpegls, ...) that would decode it
        raise UserError(f"{path}: cannot decode DICOM pixel data (transfer syntax {name}): {err}",
                        hint="install one of the handlers named above, or convert the file to uncompressed DICOM/PNG") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).strip()
    if frames > 1:
        index = frames // 2 if frame is None else frame
        if not 0 <= index < frames:
            raise UserError(f"{path}: frame {index} requested, the file has {frames}")
        pixels = pixels[index]
    elif frame not in (None, 0):
        raise UserError(f"{path}: frame {frame} requested, the file has 1")
    if photometric.startswith("MONOCHROME"):
        values = apply_modality_lut(pixels, ds)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            values = apply_voi_lut(values, ds)
        gray = _to_uint8(np.asarray(values))
        if photometric == "MONOCHROME1":  # MONOCHROME1: low values are white
            gray = 255 - gray
        return Image.fromarray(gray, mode="L").convert("RGB")
    if photometric == "PALETTE COLOR":
        array = np.asarray(apply_color_lut(pixels, ds))
        return Image.fromarray(_to_uint8(array) if array.dtype != np.uint8 else array, mode="RGB")
    if photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        array = np.asarray(pixels)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise UserError(f"{path}: {photometric} pixel data has shape {array.shape}, expected rows x columns x 3")
        return Image.fromarray(_to_uint8(array) if array.dtype != np.uint8 else array, mode="RGB")
    raise UserError(f"{path}: unsupported DICOM photometric interpretation {photometric}")


def load_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open any supported image as 8-bit RGB; a missing or unreadable file is a UserError.

    With `data`, decode those bytes (an image embedded in an annotation file) and use `path`
    only to name it in messages.
    """
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise UserError(f"{path}: image not found")
        if is_dicom(path):
            return load_dicom(path)
        source = path
    else:
        if path.suffix.lower() in (".dcm", ".dicom") or data[128:132] == b"DICM":
            return load_dicom(path, data=data)
        source = io.BytesIO(data)
    try:
        with Image.open(source) as img:
            img.load()
            return to_rgb8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path}: unreadable image ({err})") from None


def to_rgb8(img: Image.Image) -> Image.Image:
    """8/16-bit gray, palette, alpha and RGB all become 8-bit RGB (alpha composited on black)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new("RGB", img.size, (0, 0, 0))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").getchannel("A"))
        return background
    return img.convert("RGB")


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files directly in `folder` (sorted, so predictions come in a stable order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or is_dicom(p)))
    if not files:
        raise UserError(f"{folder}: no images (.jpg, .jpeg, .png, .dcm) found")
    return files
