"""A DATA_DIR is whole or absent, and its readers trust only what the manifest vouches for."""

from __future__ import annotations

import json
import os
import pickle
import time

import pytest

import fuzzlib
from dataset_fixtures import make_pathvqa, make_r2gen, make_vqa_rad_osf, write_image
from pefomed.data.prepare import prepare
from pefomed.errors import UserError
from pefomed.io import read_json
from pefomed.records import Sample, check_split_name, read_split, resolve_image, write_split
from robust_checks import check_data_dir, check_message, run_main
from test_fuzz_prepare import make_data_rad, make_jsonl


@pytest.fixture
def prepared(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "src")
    out = tmp_path / "data"
    prepare(src, "vqa-rad", out)
    return src, out


def test_prepare_refuses_an_existing_data_dir_without_overwrite(prepared, capsys):
    src, out = prepared
    before = (out / "train.jsonl").read_bytes()
    code, stdout, err = run_main(["prepare", src, "--format", "vqa-rad", "--out", out], capsys)
    check_message(code, stdout, err, "second prepare")
    assert code == 2 and "already there" in err and "--overwrite" in err
    assert (out / "train.jsonl").read_bytes() == before


def test_overwrite_replaces_the_data_dir_whole(prepared, capsys):
    src, out = prepared
    records = json.loads((src / "VQA_RAD Dataset Public.json").read_text())
    (src / "VQA_RAD Dataset Public.json").write_text(json.dumps(records[:3]))
    code, stdout, err = run_main(["prepare", src, "--format", "vqa-rad", "--out", out, "--overwrite"], capsys)
    assert code == 0, err
    assert [s.id for s in read_split(out, "train")] == ["vqa-rad-1", "vqa-rad-2", "vqa-rad-3"]
    assert not (out / "test.jsonl").exists()  # the old test split went with the old DATA_DIR
    assert not list(out.parent.glob(".data.*"))


def test_a_failing_overwrite_leaves_the_old_data_dir_untouched(prepared, capsys):
    src, out = prepared
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (src / "VQA_RAD Image Folder" / "synpic3.jpg").write_bytes(b"broken")  # fails after reading, before writing
    code, stdout, err = run_main(["prepare", src, "--format", "vqa-rad", "--out", out, "--overwrite"], capsys)
    assert code == 2 and "unreadable" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert len(read_split(out, "train")) == 3 and not list(out.parent.glob(".data.*"))


def test_overwrite_never_replaces_a_folder_prepare_did_not_write(tmp_path, capsys):
    src = make_vqa_rad_osf(tmp_path / "src")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    code, stdout, err = run_main(["prepare", src, "--format", "vqa-rad", "--out", out, "--overwrite"], capsys)
    assert code == 2 and "not a DATA_DIR" in err and (out / "thesis.tex").read_text() == "precious"


def test_an_empty_folder_is_a_fine_output(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "src")
    (tmp_path / "empty").mkdir()
    prepare(src, "vqa-rad", tmp_path / "empty")
    assert len(read_split(tmp_path / "empty", "test")) == 2


def test_the_source_inside_the_output_is_refused(tmp_path):
    src = make_vqa_rad_osf(tmp_path / "data" / "raw")
    with pytest.raises(UserError, match="inside the output folder"):
        prepare(src, "vqa-rad", tmp_path / "data", overwrite=True)


def test_a_split_file_changed_after_prepare_is_refused(prepared):
    _, out = prepared
    with open(out / "train.jsonl", "a") as handle:  # what a prepare dying midway used to leave
        handle.write(json.dumps({"id": "x", "task": "vqa", "images": [], "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(UserError, match=r"train\.jsonl: changed since prepare wrote it \(sha256"):
        read_split(out, "train")


def test_a_split_not_in_the_manifest_is_refused_and_write_split_records_it(prepared):
    _, out = prepared
    (out / "val.jsonl").write_bytes((out / "test.jsonl").read_bytes())
    with pytest.raises(UserError, match=r"val\.jsonl: not listed in .*manifest\.json"):
        read_split(out, "val")
    write_split(out, "val", read_split(out, "test"))
    assert [s.id for s in read_split(out, "val")] == [s.id for s in read_split(out, "test")]
    assert read_json(out / "manifest.json")["splits"]["val"]["samples"] == 2


def test_a_folder_without_manifest_is_not_a_data_dir(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(UserError, match="not a DATA_DIR"):
        read_split(tmp_path, "train")


@pytest.mark.parametrize("split", ["../x", "a/b", "..", "", ".hidden", "train.jsonl", "x" * 65, "tr\x00ain", "C:\\x"])
def test_split_names_must_be_plain(prepared, split, capsys):
    _, out = prepared
    with pytest.raises(UserError, match="not a plain split name"):
        read_split(out, split)
    with pytest.raises(UserError, match="not a plain split name"):
        check_split_name(split)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.png", "images/../../outside.png", "images/link.png"])
def test_image_paths_must_stay_inside_the_data_dir(prepared, bad):
    _, out = prepared
    outside = out.parent / "outside.png"
    write_image(outside, "outside")
    (out / "images" / "link.png").symlink_to(outside)
    with pytest.raises(UserError, match=r"sample s7: image path .*(relative to the DATA_DIR|outside the DATA_DIR)"):
        resolve_image(out, bad, "s7")
    if bad != "images/link.png":  # a link is only found when the file is resolved, at load time
        samples = [Sample(id="s7", task="vqa", images=[bad], question="q", answer="a")]
        write_split(out, "evil", samples)
        with pytest.raises(UserError, match=r"evil\.jsonl:1: id s7: image path"):
            read_split(out, "evil")


def test_resolve_image_returns_the_file_inside(prepared):
    _, out = prepared
    rel = read_split(out, "train")[0].images[0]
    assert resolve_image(out, rel, "x") == (out / rel).resolve()


# ---------------------------------------------------------------- silent acceptances, now refused

def test_null_question_and_list_answer_are_refused_naming_the_field(tmp_path, capsys):
    src = make_data_rad(tmp_path / "src")
    records = json.loads((src / "trainset.json").read_text())
    records[0]["question"] = None
    (src / "trainset.json").write_text(json.dumps(records))
    code, out, err = run_main(["prepare", src, "--format", "data-rad", "--out", tmp_path / "a"], capsys)
    assert code == 2 and "trainset.json: record 0 (qid 1): 'question' must be text, got null" in err
    records[0]["question"], records[1]["answer"] = "Is it?", ["a", "b"]
    (src / "trainset.json").write_text(json.dumps(records))
    code, out, err = run_main(["prepare", src, "--format", "data-rad", "--out", tmp_path / "b"], capsys)
    assert code == 2 and "record 1 (qid 2): 'answer' must be text or a number, got list" in err


def test_a_vqa_row_without_question_is_not_a_report_row(tmp_path, capsys):
    src = make_jsonl(tmp_path / "src")
    lines = (src / "train.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    del row["question"]
    lines[1] = json.dumps(row)
    (src / "train.jsonl").write_text("\n".join(lines) + "\n")
    code, out, err = run_main(["prepare", src, "--format", "jsonl", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "train.jsonl:2: a vqa row without the 'question' field" in err


def test_a_shared_list_pickle_bomb_is_refused_quickly(tmp_path, capsys):
    src = make_pathvqa(tmp_path / "src")
    (src / "split" / "qas" / "train" / "train_qa.pkl").write_bytes(fuzzlib.shared_list_bomb(25))
    start = time.monotonic()
    code, out, err = run_main(["prepare", src, "--format", "pathvqa", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "expands to more than" in err and time.monotonic() - start < 10


@pytest.mark.parametrize("payload", [(os.system, ("touch {m}",)), (open, ("{m}", "w")), (exec, ("open('{m}', 'w')",))])
def test_pickled_callables_never_run(tmp_path, capsys, payload):
    src = make_pathvqa(tmp_path / "src")
    marker = tmp_path / "ran"
    fn, args = payload
    obj = fuzzlib.Calls(fn, *(a.format(m=marker) for a in args))
    (src / "split" / "qas" / "val" / "val_qa.pkl").write_bytes(pickle.dumps([{"image": "v", "question": obj, "answer": "a"}]))
    code, out, err = run_main(["prepare", src, "--format", "pathvqa", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "refused to load" in err and not marker.exists()


def test_lone_surrogates_and_deep_nesting_are_named(tmp_path, capsys):
    src = make_r2gen(tmp_path / "src")
    ann = json.loads((src / "annotation.json").read_text())
    ann["train"][0]["report"] = "heart \ud800 normal"
    (src / "annotation.json").write_text(json.dumps(ann))  # ensure_ascii writes the \ud800 escape
    code, out, err = run_main(["prepare", src, "--format", "r2gen", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "train[0].report holds a lone surrogate" in err
    (src / "annotation.json").write_text('{"train": ' + "[" * 5000 + "]" * 5000 + "}")
    code, out, err = run_main(["prepare", src, "--format", "r2gen", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "nested too deeply" in err


def test_skip_bad_skips_too_large_images_with_the_reason(tmp_path, capsys):
    src = make_vqa_rad_osf(tmp_path / "src")
    (src / "VQA_RAD Image Folder" / "synpic3.jpg").write_bytes(fuzzlib.png_header(1500, 1000))
    code, out, err = run_main(["prepare", src, "--format", "vqa-rad", "--out", tmp_path / "a",
                               "--max-image-pixels", "1000000"], capsys)
    assert code == 2 and "image too large (1500 x 1000 = 1,500,000 pixels; the limit is 1,000,000)" in err
    code, out, err = run_main(["prepare", src, "--format", "vqa-rad", "--out", tmp_path / "b", "--skip-bad",
                               "--max-image-pixels", "1000000"], capsys)
    assert code == 0, err
    manifest = read_json(tmp_path / "b" / "manifest.json")
    assert [s["id"] for s in manifest["skipped"]] == ["vqa-rad-5"]
    assert manifest["skipped"][0]["reason"].startswith("image too large")
    check_data_dir(tmp_path / "b", "skip-bad")


def test_a_multi_megabyte_split_line_reads_and_an_oversized_one_is_named(prepared, monkeypatch):
    _, out = prepared
    sample = read_split(out, "train")[0]
    sample.answer = "effusion " * 600_000  # 5.4 MB on one line
    write_split(out, "long", [sample])
    assert read_split(out, "long")[0].answer == sample.answer
    import pefomed.io

    monkeypatch.setattr(pefomed.io, "MAX_LINE_BYTES", 1 << 20)
    with pytest.raises(UserError, match=r"long\.jsonl:1: line longer than 1 MiB"):
        read_split(out, "long")
