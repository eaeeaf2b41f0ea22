"""3-D NIfTI volumes (.nii, .nii.gz: CT-RATE style CT, MR) as images: one axial slice of a volume
is one 8-bit RGB picture, named by its path and slice index (`ct/vol.nii.gz#40`,
pefomed.records.split_slice_ref). A volume answered or trained on as one sample shows N evenly
spaced axial slices, chosen exactly as those of a DICOM series (`series_frames`, here, which DICOM series use too).

nibabel is imported inside the functions: it costs about 0.2 s, which `pefomed --help` and every
run without a volume should not pay.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from pefomed.data.image_limits import _check_pixels, max_pixels_default
from pefomed.errors import UserError
from pefomed.records import split_slice_ref

VOLUME_SUFFIXES = (".nii", ".nii.gz")

VOLUME_RULE = ("a NIfTI volume (.nii, .nii.gz) is reoriented to the closest canonical orientation, RAS+ "
               "(nibabel.as_closest_canonical: an axis permutation and flips, no resampling; oblique volumes go to "
               "their nearest axes); its axial slices are numbered from the inferior end (slice 0 is the lowest); "
               "N frames of a volume of n axial slices are slices floor((2i+1)n/2N), i = 0..N-1 (N = 1: the middle "
               "slice n//2), as for a DICOM series; a volume path without a slice is its middle slice; each slice is "
               "shown in the radiological convention (viewed from the feet: anterior at the top, the patient's right "
               "on the image's left), on its voxel grid (anisotropic voxels are not resampled); intensities are the "
               "header-scaled values (scl_slope/scl_inter: Hounsfield units for CT) mapped linearly to 0..255 over "
               "the header's display range cal_min..cal_max when it sets one (the NIfTI counterpart of a DICOM "
               "window), else over the slice's 0.5th..99.5th percentiles (robust to the padding outside a CT's field "
               "of view, -1024 or -3024 HU, which a min..max scale would let flatten the tissue); 4-D files are "
               "refused unless every dimension past the third is 1")

LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


def is_volume(path: str | Path) -> bool:
    """A .nii or .nii.gz file name (a slice reference `vol.nii.gz#40` is not one; see slice_of)."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def slice_of(path: str | Path) -> tuple[Path, int | None] | None:
    """(volume file, slice index or None for the middle) when `path` names a volume or one of its
    slices, else None."""
    file, index = split_slice_ref(str(path))
    return (Path(file), index) if is_volume(file) else None


def _open(path: Path):
    """The volume's header and lazy data, checked to be a 3-D NIfTI with voxels: (image, shape)."""
    import nibabel

    try:
        if not path.is_file():
            raise UserError(f"{path}: volume not found")
    except (OSError, ValueError) as err:  # a name too long, a NUL byte
        raise UserError(f"{str(path)[:200]}: cannot open ({err})") from None
    try:
        with warnings.catch_warnings():  # nibabel warns about odd headers: the error below says it once
            warnings.simplefilter("ignore")
            img = nibabel.load(path)
    except Exception as err:  # noqa: BLE001 - nibabel and gzip raise many types for damaged files
        raise UserError(f"{path}: unreadable NIfTI volume ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(img, (nibabel.Nifti1Image, nibabel.Nifti2Image)):
        raise UserError(f"{path}: not a NIfTI volume (nibabel reads it as {type(img).__name__})")
    shape = tuple(int(n) for n in img.shape)
    if len(shape) < 3:
        raise UserError(f"{path}: a {len(shape)}-D image ({' x '.join(map(str, shape))}); a volume has 3 dimensions",
                        hint="save a 2-D picture as PNG")
    if any(n > 1 for n in shape[3:]):
        raise UserError(f"{path}: a {len(shape)}-D volume ({' x '.join(map(str, shape))}); pefomed reads 3-D volumes",
                        hint="save the one 3-D volume to answer as its own file (e.g. nibabel's image.slicer[..., 0])")
    if 0 in shape[:3]:
        raise UserError(f"{path}: a volume with a zero-size dimension ({' x '.join(map(str, shape))})")
    return img, shape


def _orientation(path: Path, img) -> np.ndarray:
    """nibabel's (data axis -> RAS axis, flip) table of the volume's affine."""
    import nibabel

    try:
        ornt = nibabel.orientations.io_orientation(img.affine)
    except Exception as err:  # noqa: BLE001 - a singular or non-finite affine
        raise UserError(f"{path}: the volume's affine gives no orientation ({str(err)[:200]})") from None
    if ornt.shape[0] < 3 or np.isnan(ornt[:3]).any():
        raise UserError(f"{path}: the volume's affine gives no orientation for every axis (a zero or non-finite "
                        f"voxel size in the header?)")
    return ornt[:3]


def volume_slices(path: str | Path) -> int:
    """How many axial slices the volume has (VOLUME_RULE), read from its header alone."""
    path = Path(path)
    img, shape = _open(path)
    ornt = _orientation(path, img)
    return shape[int(np.flatnonzero(ornt[:, 0] == 2)[0])]


def slice_refs(rel: str, n_slices: int, frames: int) -> list[str]:
    """`frames` evenly spaced axial slices of the volume at `rel`, as image paths (`rel#K`)."""
    return [f"{rel}#{k}" for k in series_frames(n_slices, frames)]


def load_volume_slice(path: str | Path, index: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Axial slice `index` (default: the middle one) of a NIfTI volume as 8-bit RGB (VOLUME_RULE).
    Only that slice is read from the file (nibabel's array proxy), not the whole volume."""
    path = Path(path)
    img, shape = _open(path)
    ornt = _orientation(path, img)
    axial = int(np.flatnonzero(ornt[:, 0] == 2)[0])
    n = shape[axial]
    index = n // 2 if index is None else index
    if not 0 <= index < n:
        raise UserError(f"{path}: slice {index} requested, the volume has {n} axial slices")
    in_plane = [a for a in range(3) if a != axial]
    _check_pixels(path, shape[in_plane[0]], shape[in_plane[1]], 1, max_pixels or max_pixels_default())
    where: list = [slice(None)] * 3 + [0] * (len(shape) - 3)
    where[axial] = index if ornt[axial, 1] > 0 else n - 1 - index  # canonical slice 0 is the inferior end
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = np.asanyarray(img.dataobj[tuple(where)])
    except MemoryError:
        raise UserError(f"{path}: unreadable NIfTI volume (reading a slice needs more memory than there is)") from None
    except Exception as err:  # noqa: BLE001 - a truncated gzip stream or file: EOFError, OSError, ValueError ...
        raise UserError(f"{path}: unreadable NIfTI volume data ({type(err).__name__}: {str(err)[:200]}); "
                        "the file may be truncated") from None
    if not np.issubdtype(values.dtype, np.integer) and not np.issubdtype(values.dtype, np.floating):
        raise UserError(f"{path}: unsupported NIfTI data type {values.dtype} (expected real numbers)")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise UserError(f"{path}: axial slice {index} holds non-finite values (NaN or infinity)")
    # the two in-plane data axes as (towards Right, towards Anterior), each increasing that way
    if ornt[in_plane[0], 0] == 1:
        values = values.T
        in_plane = in_plane[::-1]
    for axis, data_axis in enumerate(in_plane):
        if ornt[data_axis, 1] < 0:
            values = np.flip(values, axis)
    # radiological display: rows from anterior (top) to posterior, columns from right to left
    picture = values[::-1, ::-1].T
    return Image.fromarray(_window(picture, img.header), mode="L").convert("RGB")


def _window(values: np.ndarray, header) -> np.ndarray:
    """VOLUME_RULE's linear map to 0..255: the header's cal_min..cal_max, else the percentiles."""
    low = high = None
    try:
        cal_min, cal_max = float(header["cal_min"]), float(header["cal_max"])
        if np.isfinite(cal_min) and np.isfinite(cal_max) and cal_max > cal_min:
            low, high = cal_min, cal_max
    except (KeyError, TypeError, ValueError):
        pass
    if low is None:
        low, high = (float(v) for v in np.percentile(values, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    if high <= low:  # a uniform slice
        return np.zeros(values.shape, dtype=np.uint8)
    return np.ascontiguousarray(np.clip((values - low) / (high - low) * 255.0 + 0.5, 0, 255).astype(np.uint8))


def series_frames(n_slices: int, frames: int) -> list[int]:
    """The indices of `frames` evenly spaced slices of `n_slices` (the centres of `frames` equal
    parts, in order): [n // 2] for one frame, every slice for frames == n_slices."""
    if not 1 <= frames <= n_slices:
        raise ValueError(f"frames must be 1 to {n_slices}, got {frames}")
    return [(2 * i + 1) * n_slices // (2 * frames) for i in range(frames)]
