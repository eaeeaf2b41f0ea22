"""Every format prepares from a fixture mirroring its real layout and quirks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataset_fixtures import (SHARED, make_captions, make_hf_parquet, make_llava_med, make_openi_csv, make_openi_xml,
                              make_pathvqa, make_pmc_vqa, make_r2gen, make_roco, make_slake, make_vqa_rad_osf, write_image)
from pefomed.data.formats import PrepareOptions, format_names
from pefomed.data.prepare import prepare
from pefomed.records import read_split


def splits_of(out: Path) -> dict:
    return {s: read_split(out, s) for s in ("train", "val", "test") if (out / f"{s}.jsonl").exists()}


def test_every_format_is_registered():
    assert {"vqa-rad", "data-rad", "hf-parquet", "vqa-rad-hf", "path-vqa-hf", "slake-hf", "slake", "pathvqa", "r2gen",
            "openi", "roco", "captions", "pmc-vqa", "llava-med", "jsonl", "csv", "folder"} <= set(format_names())


def test_vqa_rad_osf_release(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "osf")
    m = prepare(src, "vqa-rad", tmp_path / "out")
    got = splits_of(tmp_path / "out")
    assert [s.id for s in got["train"]] == ["vqa-rad-1", "vqa-rad-2", "vqa-rad-3"]
    assert [s.id for s in got["test"]] == ["vqa-rad-4", "vqa-rad-5"]
    by_id = {s.id: s for ss in got.values() for s in ss}
    assert by_id["vqa-rad-2"].answer_type == "closed"  # "CLOSED " with a trailing space
    assert by_id["vqa-rad-3"].answer == "2"  # integer answer kept as text
    assert "qid_linked_id" not in by_id["vqa-rad-1"].meta  # "NULL" is no value
    assert by_id["vqa-rad-1"].images == ["images/synpic1.jpg"]
    assert (tmp_path / "out" / "images" / "synpic1.jpg").is_file()
    assert m["counts"]["test_images_in_train"] == 1 and m["counts"]["test_images"] == 2


@pytest.mark.skipif(not (SHARED / "slake-annotations-sample").is_dir(), reason="SLAKE sample not found at ../shared/datasets")
@pytest.mark.parametrize("validation_name", ["validate.json", "validation.json"])
def test_slake_language_filter_then_leakage(tmp_path, validation_name):
    src = make_slake(tmp_path / "slake", validation_name)
    m = prepare(src, "slake", tmp_path / "en")
    got = splits_of(tmp_path / "en")
    assert {k: len(v) for k, v in got.items()} == {"train": 8, "val": 10, "test": 11}
    assert all(s.meta["language"] == "en" for ss in got.values() for s in ss)
    assert got["train"][0].meta["organ"] == "Abdomen" and got["train"][0].meta["modality"] == "MRI"
    # xmlab0's Chinese questions are in train, its English ones in validation: no leak in English alone
    assert m["counts"]["val_images_in_train"] == 0
    m_all = prepare(src, "slake", tmp_path / "all", PrepareOptions(language="all"))
    assert m_all["counts"]["per_split"]["train"]["total"] == 18
    assert m_all["counts"]["val_images_in_train"] == 1
    prepare(src, "slake", tmp_path / "zh", PrepareOptions(language="zh"))
    assert {k: len(v) for k, v in splits_of(tmp_path / "zh").items()} == {"train": 10}
    kvqa = next(s for s in got["train"] if s.id == "slake-1804")
    assert kvqa.meta["base_type"] == "kvqa" and kvqa.meta["triple"]


def test_pathvqa(tmp_path):
    m = prepare(make_pathvqa(tmp_path / "pvqa"), "pathvqa", tmp_path / "out")
    got = splits_of(tmp_path / "out")
    assert {k: len(v) for k, v in got.items()} == {"train": 2, "val": 1, "test": 1}
    assert [s.answer_type for s in got["train"]] == ["closed", "open"]
    assert got["train"][0].images == ["images/train/train_0422.jpg"]
    assert "inferred" in m["notes"]["answer_type"]


@pytest.mark.parametrize("fmt", ["hf-parquet", "vqa-rad-hf", "path-vqa-hf", "slake-hf"])
def test_hf_parquet_embedded_images(tmp_path, fmt):
    m = prepare(make_hf_parquet(tmp_path / "hf"), fmt, tmp_path / "out")
    got = splits_of(tmp_path / "out")
    assert {k: len(v) for k, v in got.items()} == {"train": 3, "val": 1, "test": 1}
    assert [s.answer_type for s in got["train"]] == ["closed", "open", "closed"]
    # the two rows carrying the same bytes share one content-addressed file
    assert got["train"][0].images == got["train"][1].images
    written = sorted(p.name for p in (tmp_path / "out" / "images" / "embedded").iterdir())
    assert len(written) == 4 and any(n.endswith(".jpg") for n in written)
    assert "inferred" in m["notes"]["answer_type"]
    assert all((tmp_path / "out" / s.images[0]).is_file() for ss in got.values() for s in ss)


@pytest.mark.parametrize("mimic", [False, True])
def test_r2gen_studies_and_per_image(tmp_path, mimic):
    src = make_r2gen(tmp_path / "r2gen", mimic=mimic)
    prepare(src, "r2gen", tmp_path / "study")
    got = splits_of(tmp_path / "study")
    assert {k: len(v) for k, v in got.items()} == {"train": 2, "val": 1, "test": 1}
    first = got["train"][0]
    assert first.task == "report" and first.prompt is None and len(first.images) == 2
    assert first.answer.startswith("No acute" if mimic else "The heart")
    if mimic:
        assert first.meta["study_id"] == 50001 and first.meta["subject_id"] == 10001
    prepare(src, "r2gen", tmp_path / "per", PrepareOptions(per_image=True))
    per = splits_of(tmp_path / "per")
    assert {k: len(v) for k, v in per.items()} == {"train": 4, "val": 2, "test": 1}
    assert all(len(s.images) == 1 for ss in per.values() for s in ss)


def test_openi_xml_sections_and_split_by_study(tmp_path):
    src = make_openi_xml(tmp_path / "openi", studies=20)
    m = prepare(src, "openi", tmp_path / "f", PrepareOptions(split="0.6,0.2,0.2", seed=3))
    got = splits_of(tmp_path / "f")
    assert sum(len(v) for v in got.values()) == 20 and set(got) == {"train", "val", "test"}
    assert len(got["train"]) == 12
    sample = got["train"][0]
    assert sample.task == "report" and len(sample.images) == 2 and sample.answer.startswith("The lungs are clear")
    assert m["counts"]["test_images_in_train"] == 0  # a study never crosses splits
    prepare(src, "openi", tmp_path / "b", PrepareOptions(section="both", split="0.6,0.2,0.2", seed=3))
    both = splits_of(tmp_path / "b")
    assert "\n\nNo active disease" in both["train"][0].answer
    assert [s.id for s in both["train"]] == [s.id for s in got["train"]]  # same seed, same split
    prepare(src, "openi", tmp_path / "s4", PrepareOptions(split="0.6,0.2,0.2", seed=4))
    assert [s.id for s in splits_of(tmp_path / "s4")["train"]] != [s.id for s in got["train"]]


def test_openi_csv_pair(tmp_path):
    src = make_openi_csv(tmp_path / "kaggle", studies=6)
    prepare(src, "openi", tmp_path / "out", PrepareOptions(section="impression", split="0.5,0,0.5"))
    got = splits_of(tmp_path / "out")
    assert set(got) == {"train", "test"} and sum(map(len, got.values())) == 6
    s = got["train"][0]
    assert s.answer.startswith("Normal chest") and s.meta["projections"] == ["Frontal", "Lateral"]
    assert s.meta["mesh"] == ["normal", "Cardiomegaly/mild"]


def test_roco_captions_strip_the_leading_space(tmp_path):
    prepare(make_roco(tmp_path / "roco"), "roco", tmp_path / "out")
    got = splits_of(tmp_path / "out")
    assert {k: len(v) for k, v in got.items()} == {"train": 2, "val": 1, "test": 1}
    s = got["train"][0]
    assert s.id == "ROCO_00001" and s.task == "report" and s.answer == "Computed tomography of the chest ROCO_00001."
    assert s.meta["collection"] == "radiology"


def test_captions_json_seeded_split(tmp_path):
    prepare(make_captions(tmp_path / "cap"), "captions", tmp_path / "out", PrepareOptions(split="0.8,0.1,0.1", seed=1))
    got = splits_of(tmp_path / "out")
    assert {k: len(v) for k, v in got.items()} == {"train": 8, "val": 1, "test": 1}
    assert all(s.task == "report" and s.answer.startswith("Axial CT") for ss in got.values() for s in ss)


def test_pmc_vqa_open_and_multiple_choice(tmp_path):
    src = make_pmc_vqa(tmp_path / "pmc")
    prepare(src, "pmc-vqa", tmp_path / "open")
    got = splits_of(tmp_path / "open")
    first = got["train"][0]
    assert first.answer == "Axial" and first.answer_type == "open" and first.question == "What plane is shown?"
    assert first.meta["choices"] == {"A": "Sagittal", "B": "Axial", "C": "Coronal", "D": "Oblique"}
    assert first.meta["answer_label"] == "B"
    assert got["train"][1].answer_type == "closed" and got["train"][1].meta["choices"] == {"A": "Yes", "B": "No"}
    assert got["test"][0].answer == "MRI"  # read from the misspelled "Anwser" column
    prepare(src, "pmc-vqa", tmp_path / "mc", PrepareOptions(multiple_choice=True))
    mc = splits_of(tmp_path / "mc")["train"][0]
    assert mc.question == "What plane is shown?\nA: Sagittal\nB: Axial\nC: Coronal\nD: Oblique"
    assert mc.answer == "B: Axial" and mc.answer_type == "closed"


def test_llava_med_conversations(tmp_path):
    m = prepare(make_llava_med(tmp_path / "llava"), "llava-med", tmp_path / "out")
    got = splits_of(tmp_path / "out")
    assert [s.id for s in got["train"]] == ["q1-0", "q2-0", "q2-1"]
    assert got["train"][0].question == "Is there an effusion?" and got["train"][1].question == "What is seen?"
    assert [s.answer_type for s in got["train"]] == ["closed", "open", "closed"]
    assert got["test"][0].answer_type == "open"
    assert "inferred for 2" in m["notes"]["answer_type"]


def test_jsonl_with_column_map(tmp_path):
    src = tmp_path / "j"
    rows = [{"q": f"Is it {k}?", "a": "yes" if k % 2 else "kidney", "img": f"i{k}.png", "part": "train" if k < 4 else "test",
             "org": "ABD"} for k in range(6)]
    src.mkdir()
    (src / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        write_image(src / r["img"], r["img"])
    opts = PrepareOptions(column_map={"question": "q", "answer": "a", "image": "img", "split": "part", "organ": "org"})
    prepare(src, "jsonl", tmp_path / "out", opts)
    got = splits_of(tmp_path / "out")
    assert {k: len(v) for k, v in got.items()} == {"train": 4, "test": 2}
    assert got["train"][1].answer_type == "closed" and got["train"][0].answer_type == "open"
    assert got["train"][0].meta == {"organ": "ABD"}


def test_csv_report_rows_with_several_images(tmp_path):
    src = tmp_path / "c"
    src.mkdir()
    lines = ["study,views,text"] + [f"s{k},a{k}.png;b{k}.png,Report {k}" for k in range(5)]
    (src / "reports.csv").write_text("\n".join(lines) + "\n")
    for k in range(5):
        write_image(src / f"a{k}.png", f"a{k}")
        write_image(src / f"b{k}.png", f"b{k}")
    prepare(src / "reports.csv", "csv", tmp_path / "out",
            PrepareOptions(column_map={"id": "study", "image": "views", "answer": "text"}, split="0.6,0.2,0.2"))
    got = splits_of(tmp_path / "out")
    assert sum(map(len, got.values())) == 5
    s = got["train"][0]
    assert s.task == "report" and len(s.images) == 2 and s.answer.startswith("Report")


def test_folder_with_sidecar_reports(tmp_path):
    src = tmp_path / "f"
    for split in ("train", "test"):
        for k in range(2):
            write_image(src / split / f"{k}.png", f"{split}{k}")
            (src / split / f"{k}.txt").write_text(f"Report {split} {k}\n")
    prepare(src, "folder", tmp_path / "out")
    got = splits_of(tmp_path / "out")
    assert [s.id for s in got["test"]] == ["test/0", "test/1"] and got["test"][0].answer == "Report test 0"
