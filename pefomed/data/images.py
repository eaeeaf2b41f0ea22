"""The one image loader used by prepare and by `infer --images`: JPEG/PNG through Pillow,
DICOM through pydicom, NIfTI through nibabel. Every image comes out as an 8-bit RGB PIL image.

NIfTI volumes (.nii, .nii.gz) and their slices (`vol.nii.gz#40`) go to pefomed.data.volumes
(VOLUME_RULE): one axial slice is one picture.

DICOM series (`dicom_series`, SERIES_RULE): single-frame slices of one volume, grouped by folder
and SeriesInstanceUID from their headers and ordered along the slice normal, so that `infer
--images` can answer a CT or MR series as one sample shown as its middle slice (or N evenly
spaced ones, `series_frames`).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pefomed.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm", ".dicom"}

from pefomed.data.image_limits import (DEFAULT_MAX_PIXELS, LIMIT_HINT, MAX_PIXELS_ENV,  # noqa: F401 (re-exported)
                                         _check_pixels, max_pixels_default)
from pefomed.data.volumes import series_frames  # noqa: F401 (the DICOM series' slice choice too)


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
    array = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(np.min(array)), float(np.max(array))
    if high <= low:
        return np.zeros(array.shape, dtype=np.uint8)
    return np.clip((array - low) / (high - low) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def load_dicom(path: Path | str, frame: int | None = None, data: bytes | None = None,
               max_pixels: int | None = None) -> Image.Image:
    """Modality LUT (rescale slope/intercept), then the VOI window, MONOCHROME1 inverted.

    Multi-frame files: `frame` if given, else the middle frame (frames // 2), so the same file
    always gives the same picture. Colour data comes out of pydicom already as RGB (it converts
    YBR itself), palette colour goes through the palette. `data` reads the file from bytes
    (images embedded in annotation files); `path` then only names it in messages.
    """
    import pydicom
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    try:
        with warnings.catch_warnings():  # pydicom warns about damaged headers: the error below says it once
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data) if data is not None else path)
        has_pixels = "PixelData" in ds or "FloatPixelData" in ds or "DoubleFloatPixelData" in ds
    except Exception as err:  # pydicom raises several types for damaged files
        raise UserError(f"{path}: unreadable DICOM ({str(err)[:200]})") from None
    if not has_pixels:
        raise UserError(f"{path}: DICOM file has no pixel data")
    try:
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception as err:  # a damaged header value (text where a number belongs)
        raise UserError(f"{path}: DICOM header has an invalid Rows/Columns/NumberOfFrames ({str(err)[:200]})") from None
    if rows <= 0 or columns <= 0 or frames <= 0:
        raise UserError(f"{path}: DICOM header gives {rows} rows, {columns} columns, {frames} frames")
    _check_pixels(Path(path), columns, rows, frames, max_pixels or max_pixels_default())
    try:
        pixels = ds.pixel_array
    except Exception as err:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", syntax)
        # pydicom's message lists the handlers (gdcm, pylibjpeg, pyjpegls, ...) that would decode it
        raise UserError(f"{path}: cannot decode DICOM pixel data (transfer syntax {name}): {str(err)[:500]}",
                        hint="install one of the handlers named above, or convert the file to uncompressed DICOM/PNG") from None
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


def load_image(path: str | Path, data: bytes | None = None, max_pixels: int | None = None) -> Image.Image:
    """Open any supported image as 8-bit RGB; a missing, unreadable or too large file is a UserError.

    With `data`, decode those bytes (an image embedded in an annotation file) and use `path`
    only to name it in messages. `max_pixels` (default: max_pixels_default()) is checked
    against the size in the file's header before any pixel is decoded.
    """
    from pefomed.data.volumes import load_volume_slice, slice_of

    limit = max_pixels or max_pixels_default()
    volume = slice_of(path)  # a NIfTI volume (its middle slice) or one slice of it, `vol.nii.gz#40`
    if volume is not None:
        if data is not None:
            raise UserError(f"{volume[0]}: a NIfTI volume inside an annotation file is not supported; "
                            "give volumes as files")
        return load_volume_slice(volume[0], volume[1], max_pixels=limit)
    path = Path(path)
    if data is None:
        try:
            if not path.is_file():
                raise UserError(f"{path}: image not found")
        except (OSError, ValueError) as err:  # a name too long, a NUL byte
            raise UserError(f"{str(path)[:200]}: cannot open ({err})") from None
        if is_dicom(path):
            return load_dicom(path, max_pixels=limit)
        source = path
    else:
        if path.suffix.lower() in (".dcm", ".dicom") or data[128:132] == b"DICM":
            return load_dicom(path, data=data, max_pixels=limit)
        source = io.BytesIO(data)
    saved = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check (warn above MAX_IMAGE_PIXELS, raise above twice that, at
            # its fixed 89 Mpx) runs inside Image.open. Opening only parses the header, so it is
            # switched off for the open and our check, with the configurable limit and the
            # image's real size in the message, runs right after, before anything is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(source) as img:
                _check_pixels(path, img.width, img.height, getattr(img, "n_frames", 1) if img.format == "TIFF" else 1,
                              limit)
                img.load()
                return to_rgb8(img)
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(f"{path}: image too large (more than twice the limit of {limit:,} pixels); "
                        "refused before decoding",
                        hint=LIMIT_HINT) from None
    except MemoryError:
        raise UserError(f"{path}: unreadable image (decoding it needs more memory than there is)") from None
    except Exception as err:  # noqa: BLE001 - decoders raise many types (OSError, SyntaxError, struct.error,
        # EOFError, ZeroDivisionError ...) for damaged bytes; all mean the same to the user
        raise UserError(f"{path}: unreadable image ({type(err).__name__}: {str(err)[:200]})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


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


# --- DICOM series: a folder of single-frame slices of one volume answered as one sample --------------

SERIES_RULE = ("single-frame DICOM files in the same folder with the same SeriesInstanceUID and an "
               "ImagePositionPatient (CT, MR, PET slices; projection radiographs carry none) form one series "
               "when there are at least 2 of them; its slices are ordered by their position along the slice normal "
               "(ImageOrientationPatient of the first file by name; z without it), then InstanceNumber, then file "
               "name; N frames of a series of n slices are slices floor((2i+1)n/2N), i = 0..N-1 (N = 1: the "
               "middle slice n//2); each series of a folder is its own sample")


@dataclass(frozen=True)
class SliceHeader:
    """What ordering a slice in its series needs, read without its pixels."""

    path: Path
    series_uid: str | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    instance_number: int | None
    frames: int


def _floats(value, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count and all(np.isfinite(numbers)) else None


def read_slice_header(path: Path) -> SliceHeader | None:
    """The series fields of a DICOM file's header, or None when the header does not parse (the
    file is then answered on its own, and its loader names the problem)."""
    import pydicom

    try:
        with warnings.catch_warnings():  # a damaged header is named by load_dicom, once
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        uid = str(ds.get("SeriesInstanceUID", "") or "").strip() or None
        position = _floats(ds.get("ImagePositionPatient"), 3)
        orientation = _floats(ds.get("ImageOrientationPatient"), 6)
        try:
            instance = int(ds.get("InstanceNumber")) if ds.get("InstanceNumber") not in (None, "") else None
        except (TypeError, ValueError):
            instance = None
        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            frames = 1
    except Exception:  # noqa: BLE001 - pydicom raises many types for damaged headers
        return None
    return SliceHeader(Path(path), uid, position, orientation, instance, frames)


def _order_slices(slices: list[SliceHeader]) -> list[SliceHeader]:
    by_name = sorted(slices, key=lambda s: s.path.name)
    first = by_name[0].orientation
    normal = np.cross(first[:3], first[3:]) if first is not None else np.array([0.0, 0.0, 1.0])
    if not np.any(normal):  # a degenerate orientation (parallel row and column): fall back to z
        normal = np.array([0.0, 0.0, 1.0])

    def key(s: SliceHeader):
        return (float(np.dot(s.position, normal)), s.instance_number if s.instance_number is not None else 0,
                s.path.name)

    return sorted(by_name, key=key)


def dicom_series(paths: list[Path]) -> tuple[list[tuple[str, list[Path]]], list[Path]]:
    """(series, the other paths) among `paths` (SERIES_RULE): each series as (SeriesInstanceUID,
    its slices in order), sorted by folder then UID; the others keep their order."""
    groups: dict[tuple[Path, str], list[SliceHeader]] = {}
    for path in paths:
        if not is_dicom(path):
            continue
        header = read_slice_header(path)
        if header is None or header.series_uid is None or header.position is None or header.frames != 1:
            continue
        groups.setdefault((path.parent, header.series_uid), []).append(header)
    series = [(uid, [s.path for s in _order_slices(slices)])
              for (folder, uid), slices in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))
              if len(slices) >= 2]
    grouped = {p for _, slices in series for p in slices}
    return series, [p for p in paths if p not in grouped]
