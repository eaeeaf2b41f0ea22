"""Fuzz the one image loader (prepare, `infer --images`): empty, truncated and corrupted files,
huge-dimension headers, DICOM without pixel data or with an absurd header, text. Each loads as
an RGB image or is one UserError naming the file; nothing is decoded past the pixel limit."""

from __future__ import annotations

import random

import pytest

import fuzzlib
from dataset_fixtures import image_bytes, write_image
from pefomed.data.images import load_image
from pefomed.errors import UserError
from robust_checks import check_data_dir, check_message, run_main


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_loader_fuzz(fmt, tmp_path):
    n = max(1, fuzzlib.cases("images") // 2)
    good = image_bytes("fuzz", fmt)
    outcomes = {"loaded": 0, "refused": 0}
    for seed in range(n):
        rng = random.Random(f"images:{fmt}:{seed}")
        data, label = fuzzlib.bad_image_bytes(rng, good)
        path = tmp_path / f"{seed}.{'png' if fmt == 'PNG' else 'jpg'}"
        path.write_bytes(data)
        for kwargs in ({}, {"data": data}):  # a file, and bytes embedded in an annotation file
            try:
                img = load_image(path, **kwargs)
            except UserError as err:
                assert str(path) in str(err), f"{label}: {err}"
                outcomes["refused"] += 1
                continue
            assert img.mode == "RGB" and img.width * img.height <= 100_000_000, label
            outcomes["loaded"] += 1
    print(f"images {fmt}: {n} cases, {outcomes}")


def test_huge_header_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    path.write_bytes(fuzzlib.png_header(100_000, 100_000))
    with pytest.raises(UserError, match=r"bomb\.png: image too large .*refused before decoding"):
        load_image(path)
    path.write_bytes(fuzzlib.png_header(3000, 2000))
    with pytest.raises(UserError, match=r"3000 x 2000 = 6,000,000 pixels; the limit is 5,000,000"):
        load_image(path, max_pixels=5_000_000)
    monkeypatch.setenv("PEFOMED_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(UserError, match="the limit is 1,000"):
        load_image(path)


def test_dicom_header_is_checked_before_pixels(tmp_path):
    path = tmp_path / "big.dcm"
    path.write_bytes(fuzzlib.dicom_huge_header())
    with pytest.raises(UserError, match=r"60000 x 60000 x 100 frames"):
        load_image(path)
    path.write_bytes(fuzzlib.dicom_without_pixels())
    with pytest.raises(UserError, match="no pixel data"):
        load_image(path)


def test_folder_of_bad_images_with_skip_bad(tmp_path, capsys):
    rng = random.Random(7)
    src = tmp_path / "src"
    good = image_bytes("ok")
    for i in range(8):
        image = write_image(src / "train" / f"case{i}.png", f"case{i}")
        image.with_suffix(".txt").write_text(f"Report {i}.")
        if i % 2:
            image.write_bytes(fuzzlib.bad_image_bytes(rng, good)[0])
    code, out, err = run_main(["prepare", src, "--format", "folder", "--out", tmp_path / "a"], capsys)
    check_message(code, out, err, "bad images")
    assert code == 2 and not (tmp_path / "a").exists()
    code, out, err = run_main(["prepare", src, "--format", "folder", "--out", tmp_path / "b", "--skip-bad",
                               "--split", "1,0,0"], capsys)
    assert code == 0, err
    assert check_data_dir(tmp_path / "b", "skip-bad") == 4
