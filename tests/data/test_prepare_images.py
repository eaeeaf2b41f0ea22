"""The image loader: PNG/JPEG in every mode, DICOM through pydicom, folders for `infer --images`."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from dataset_fixtures import make_vqa_rad_osf
from pefomed.data.images import list_image_files, load_image
from pefomed.data.prepare import ImageOptions, prepare
from pefomed.errors import UserError
from pefomed.records import read_split


@pytest.mark.parametrize("mode,array", [
    ("I;16", (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)),
    ("L", np.arange(64, dtype=np.uint8).reshape(8, 8)),
    ("RGBA", np.full((8, 8, 4), 200, dtype=np.uint8)),
    ("LA", np.full((8, 8, 2), 100, dtype=np.uint8)),
])
def test_png_modes_become_8bit_rgb(tmp_path, mode, array):
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)  # the mode follows from dtype and shape
    with Image.open(path) as check:
        assert check.mode == mode
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (8, 8)
    if mode == "I;16":  # 16-bit stretched over 0..255, not clipped
        px = np.asarray(img)[..., 0]
        assert px.min() == 0 and px.max() == 255


def test_palette_png(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P").save(path)
    assert load_image(path).mode == "RGB"


def test_ct_dicom_applies_rescale_and_window():
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    img = np.asarray(load_image(get_testdata_file("CT_small.dcm")))
    assert img.shape == (128, 128, 3)
    # brighter where Hounsfield units are higher: the modality LUT was applied monotonically
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo, hi = np.unravel_index(hu.argmin(), hu.shape), np.unravel_index(hu.argmax(), hu.shape)
    assert img[lo][0] < img[hi][0]


def test_monochrome1_is_inverted(tmp_path):
    src = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(src)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    normal = np.asarray(load_image(src)).astype(int)
    inverted = np.asarray(load_image(tmp_path / "m1.dcm")).astype(int)
    assert np.array_equal(inverted, 255 - normal)


def test_multiframe_uses_the_middle_frame():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    frames = int(ds.NumberOfFrames)
    assert frames > 1
    img = np.asarray(load_image(path))[..., 0]
    middle = ds.pixel_array[frames // 2].astype(float)
    # same ordering of pixel values as the middle frame
    assert np.corrcoef(img.ravel(), middle.ravel())[0, 1] > 0.99


def test_ybr_jpeg_dicom_is_not_converted_twice():
    img = np.asarray(load_image(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))).astype(int)
    ref = pydicom.dcmread(get_testdata_file("SC_rgb_dcmtk_+eb+cr.dcm")).pixel_array.astype(int)
    assert np.abs(img - ref).mean() < 8


def test_dicom_without_pixel_data():
    with pytest.raises(UserError, match="rtplan.dcm: DICOM file has no pixel data"):
        load_image(get_testdata_file("rtplan.dcm"))


def test_compressed_dicom_without_handler_names_the_handlers():
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    try:
        import pyjpegls  # noqa: F401
        pytest.skip("a JPEG-LS handler is installed")
    except ImportError:
        pass
    with pytest.raises(UserError, match=r"(?s)JPEG-LS.*missing dependencies.*pyjpegls"):
        load_image(path)


def test_truncated_dicom():
    with pytest.raises(UserError, match="MR_truncated.dcm"):
        load_image(get_testdata_file("MR_truncated.dcm"))


def test_folder_of_dicom_files_for_infer(tmp_path):
    shutil.copyfile(get_testdata_file("CT_small.dcm"), tmp_path / "b.dcm")
    shutil.copyfile(get_testdata_file("MR_small.dcm"), tmp_path / "a")  # no suffix: found by the DICM magic
    (tmp_path / "notes.txt").write_text("x")
    files = list_image_files(tmp_path)
    assert [p.name for p in files] == ["a", "b.dcm"]
    assert all(load_image(p).mode == "RGB" for p in files)


def test_prepare_converts_dicom_and_resizes(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "osf")
    folder = src / "VQA_RAD Image Folder"
    (folder / "synpic1.jpg").unlink()
    shutil.copyfile(get_testdata_file("CT_small.dcm"), folder / "synpic1.dcm")
    path = src / "VQA_RAD Dataset Public.json"
    path.write_text(path.read_text().replace("synpic1.jpg", "synpic1.dcm"))
    prepare(src, "vqa-rad", tmp_path / "orig")
    assert (tmp_path / "orig" / "images" / "synpic1.dcm").is_file()  # originals kept by default
    prepare(src, "vqa-rad", tmp_path / "png", images=ImageOptions(image_size=32, image_format="png"))
    train = read_split(tmp_path / "png", "train")
    assert train[0].images == ["images/synpic1.png"]
    with Image.open(tmp_path / "png" / "images" / "synpic1.png") as img:
        assert img.format == "PNG" and max(img.size) == 32
    prepare(src, "vqa-rad", tmp_path / "jpg", images=ImageOptions(image_format="jpeg"))
    with Image.open(tmp_path / "jpg" / read_split(tmp_path / "jpg", "test")[0].images[0]) as img:
        assert img.format == "JPEG"
