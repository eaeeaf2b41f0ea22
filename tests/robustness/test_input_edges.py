"""Issue 21's input edge cases, each one clear message naming the file, line, column, field or id
(library calls: each is the function every command reads that input through), and DATA_DIR
changes after prepare refused before a run uses them."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from pefomed.errors import UserError


def test_a_repeated_csv_column_is_refused_naming_it(tmp_path):
    from pefomed.data.formats._common import read_csv_rows

    path = tmp_path / "train.csv"
    path.write_text("Figure_path,Question,Answer,Question\nimg.jpg,What organ?,A,chest\n")
    with pytest.raises(UserError, match=r"train.csv:1: column 'Question' appears twice .*columns 2 and 4"):
        list(read_csv_rows(path))


def test_infer_questions_refuse_a_repeated_column_and_an_unterminated_quote(tmp_path):
    from pefomed.infer.sources import _question_rows

    repeated = tmp_path / "q.csv"
    repeated.write_text("image,question,question\na.png,Is there a mass?,x\n")
    with pytest.raises(UserError, match="column 'question' appears twice"):
        list(_question_rows(repeated))
    unterminated = tmp_path / "u.csv"
    unterminated.write_text('image,question\na.png,"Is there a mass?\nb.png,Is it normal?\n')
    with pytest.raises(UserError, match="u.csv"):
        list(_question_rows(unterminated))


def test_a_number_that_overflows_to_infinity_is_refused(tmp_path):
    from pefomed.io import iter_jsonl, read_json

    rows = tmp_path / "pred.jsonl"
    rows.write_text('{"id": "a", "prediction": "yes", "meta": {"organ": 1e400}}\n')
    with pytest.raises(UserError, match=r"pred.jsonl:1.*infinity"):
        list(iter_jsonl(rows))
    single = tmp_path / "ann.json"
    single.write_text('[{"qid": 1, "answer": -1e999}]')
    with pytest.raises(UserError, match="ann.json.*infinity"):
        read_json(single)


@pytest.mark.parametrize("value", [True, False])
def test_true_or_false_where_text_belongs_is_refused(value):
    from pefomed.data.formats._common import clean

    with pytest.raises(UserError, match="train.json:3: 'image_organ' must be text, got true/false"):
        clean(value, "train.json:3", "image_organ")
    assert clean(None, "x", "image_organ") is None  # absent stays absent


def test_the_folder_format_lists_broken_links_or_refuses_them(tmp_path):
    from pefomed.data.formats import PrepareOptions
    from pefomed.data.formats.generic import read_folder
    from PIL import Image

    source = tmp_path / "scans"
    source.mkdir()
    Image.new("RGB", (8, 8)).save(source / "ok.png")
    (source / "ok.txt").write_text("no acute findings")
    os.symlink(source / "gone.png", source / "dangling.png")
    os.symlink(source / "loop.png", source / "loop.png")
    with pytest.raises(UserError, match=r"(?s)2 image\(s\).*dangling: symbolic link to a missing file") as caught:
        read_folder(source, PrepareOptions())
    assert "loop" in str(caught.value)
    read = read_folder(source, PrepareOptions(skip_bad=True))
    assert sorted(s["id"] for s in read.skipped) == ["dangling", "loop"]
    assert [s.id for samples in read.splits.values() for s in samples] == ["ok"]


@pytest.mark.parametrize("field, value", [("images", ""), ("meta", ""), ("predictions", "yes"),
                                          ("predictions", []), ("references", [1])])
def test_score_refuses_a_wrongly_typed_container_field(tmp_path, field, value):
    from pefomed.records import iter_predictions

    path = tmp_path / "pred.jsonl"
    path.write_text(json.dumps({"id": "a", "prediction": "yes", "reference": "yes"}) + "\n"
                    + json.dumps({"id": "b", "prediction": "no", "reference": "no", field: value}) + "\n")
    with pytest.raises(UserError, match=rf"pred.jsonl:2: field '{field}' must be"):
        list(iter_predictions(path))


def test_import_refuses_a_text_file_and_integer_weight_names(tmp_path):
    from pefomed.models.released import read_released

    text = tmp_path / "notes.pth"
    text.write_text("e" * 200)  # was KeyError: 101 from inside the unpickler
    with pytest.raises(UserError, match="notes.pth: not a readable PyTorch checkpoint"):
        read_released(text)
    numbered = tmp_path / "numbered.pth"
    torch.save({"model": {0: torch.zeros(2)}}, numbered)  # was a TypeError
    with pytest.raises(UserError, match="numbered.pth: weight names must be strings, got the int key 0"):
        read_released(numbered)


@pytest.fixture
def data_copy(demo_data, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(demo_data, copy)
    return copy


def test_an_untouched_data_dir_reads(data_copy):
    from pefomed.records import read_split

    assert read_split(data_copy, "train")


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_a_replaced_image_is_refused_naming_it(data_copy, same_size):
    from pefomed.records import read_split

    # the path from the split file itself: read_split verifies a DATA_DIR once per process
    first = json.loads((data_copy / "train.jsonl").read_text().splitlines()[0])
    image = data_copy / first["images"][0]
    data = bytearray(image.read_bytes())
    if same_size:
        data[-3] ^= 0xFF  # one byte of the JPEG changed: size kept, digest not
    else:
        data += b"\0"
    image.write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"{image.name}: changed since prepare wrote it"):
        read_split(data_copy, "train")


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["splits"]["train"].update(samples=m["splits"]["train"]["samples"] + 1), "splits.train.samples"),
    (lambda m: m["splits"]["train"].update(file="../other/train.jsonl"), "splits.train.file"),
])
def test_manifest_edits_after_prepare_are_refused(data_copy, edit, says):
    from pefomed.records import read_split

    manifest = json.loads((data_copy / "manifest.json").read_text())
    edit(manifest)
    (data_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=rf"manifest.json: {says}"):
        read_split(data_copy, "train")
