"""The complete VQA-RAD copy in ../shared/datasets/vqa-rad: counts, leakage, determinism, resplit."""

from __future__ import annotations

import json

import pytest

from dataset_fixtures import SHARED, make_hf_parquet
from pefomed.data.formats import PrepareOptions
from pefomed.data.prepare import prepare
from pefomed.records import read_split

VQA_RAD = SHARED / "vqa-rad"
needs_vqa_rad = pytest.mark.skipif(not (VQA_RAD / "trainset.json").is_file(),
                                   reason=f"complete VQA-RAD copy not found at {VQA_RAD.resolve()}")


@needs_vqa_rad
def test_full_vqa_rad_counts_and_leakage(tmp_path):
    m = prepare(VQA_RAD, "data-rad", tmp_path / "all")
    per = m["counts"]["per_split"]
    assert per["train"]["total"] == 3064 and per["test"]["total"] == 451
    assert per["test"]["vqa/closed"] == 272 and per["test"]["vqa/open"] == 179
    assert m["counts"]["test_images_in_train"] == 203 and m["counts"]["test_images"] == 203
    m = prepare(VQA_RAD, "data-rad", tmp_path / "official", PrepareOptions(drop_frame=True))
    assert m["counts"]["per_split"]["train"]["total"] == 1797
    assert m["notes"]["dropped_frame_rows"] == 1267
    assert all(s.meta["phrase_type"] != "frame" for s in read_split(tmp_path / "official", "train"))


@needs_vqa_rad
def test_resplit_by_image_has_no_leakage(tmp_path):
    m = prepare(VQA_RAD, "data-rad", tmp_path / "r", PrepareOptions(drop_frame=True, resplit_by_image=True, seed=7))
    c = m["counts"]
    assert c["test_images_in_train"] == 0 and c["val_images_in_train"] == 0
    assert sum(v["samples"] for v in m["splits"].values()) == 2248
    assert 0.75 < c["per_split"]["train"]["total"] / 2248 < 0.85
    assert m["notes"]["resplit_by_image"]["seed"] == 7
    test = read_split(tmp_path / "r", "test")
    assert {s.meta["original_split"] for s in test} == {"train", "test"}


def _strip_time(path):
    m = json.loads(path.read_text())
    m.pop("created_at")
    return m


@needs_vqa_rad
def test_preparing_twice_is_byte_identical(tmp_path):
    opts = PrepareOptions(drop_frame=True, resplit_by_image=True, seed=3)
    prepare(VQA_RAD, "data-rad", tmp_path / "a", opts)
    prepare(VQA_RAD, "data-rad", tmp_path / "b", PrepareOptions(drop_frame=True, resplit_by_image=True, seed=3))
    for split in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert _strip_time(tmp_path / "a" / "manifest.json") == _strip_time(tmp_path / "b" / "manifest.json")


def test_embedded_images_prepare_deterministically(tmp_path):
    src = make_hf_parquet(tmp_path / "hf")
    prepare(src, "hf-parquet", tmp_path / "a")
    prepare(src, "hf-parquet", tmp_path / "b")
    for split in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert _strip_time(tmp_path / "a" / "manifest.json") == _strip_time(tmp_path / "b" / "manifest.json")
