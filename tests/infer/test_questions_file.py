"""`--questions FILE` with `--images FOLDER`: a CSV or JSONL file asks many questions of each image
(paths relative to the folder); ids default to PATH#N; references are written for `score`; a
mistake in the file names the file and line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pefomed.cli.app import main
from pefomed.errors import UserError
from pefomed.infer.sources import questions_samples


@pytest.fixture
def folder(tmp_path):
    for rel in ("study1/image1.png", "study2/image1.png"):
        (tmp_path / "scans" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (90, 90, 90)).save(tmp_path / "scans" / rel)
    return tmp_path / "scans"


def test_a_csv_asks_many_questions_per_image_and_writes_references(tiny_run, folder, tmp_path):
    csv = tmp_path / "q.csv"
    csv.write_text('image,question,reference\n'
                   'study1/image1.png,Is there a fracture?,no\n'
                   'study1/image1.png,"Which organ, exactly?",lung\n'
                   'study2/image1.png,Is this normal?,yes\n', encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    assert main(["infer", str(tiny_run), "--images", str(folder), "--questions", str(csv), "--out", str(out),
                 "--max-new-tokens", "2"]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == ["study1/image1.png#1", "study1/image1.png#2", "study2/image1.png#1"]
    assert [r["reference"] for r in rows] == ["no", "lung", "yes"]
    assert rows[1]["images"] == ["study1/image1.png"] and "Which organ, exactly?" in rows[1]["question"]
    settings = json.loads((tmp_path / "pred.settings.json").read_text())
    assert settings["inputs"]["questions"] == str(csv.resolve()) and len(settings["inputs"]["questions_sha256"]) == 64
    assert main(["score", str(out), "--out", str(tmp_path / "m.json")]) == 0  # the references reach score


def test_jsonl_ids_and_no_references(folder, tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"image": "study2/image1.png", "question": "Is this normal?", "id": "q-7"}\n\n'
                    '{"image": "study2/image1.png", "question": "Any effusion?"}\n', encoding="utf-8")
    samples, root, with_references = questions_samples(path, folder)
    assert [s.id for s in samples] == ["q-7", "study2/image1.png#2"] and root == folder and not with_references
    assert [s.question for s in samples] == ["Is this normal?", "Any effusion?"] and samples[0].task == "vqa"


@pytest.mark.parametrize("name, text, expected", [
    ("q.csv", "image,question\nstudy1/image1.png,Fine?\nstudy1/missing.png,Where?\n", "q.csv:3: image study1/missing.png not found"),
    ("q.csv", "image,question\nstudy1/image1.png,\n", "q.csv:2: no 'question'"),
    ("q.csv", "path,question\nstudy1/image1.png,Fine?\n", "q.csv:1: the header has no 'image' column"),
    ("q.csv", "image,question\n../outside.png,Fine?\n", "q.csv:2:"),
    ("q.csv", "image,question,reference\nstudy1/image1.png,A?,yes\nstudy2/image1.png,B?\n", "q.csv:3: no reference, but line 2"),
    ("q.csv", "image,question,id\nstudy1/image1.png,A?,x\nstudy2/image1.png,B?,x\n", "q.csv:3: id 'x' already used on line 2"),
    ("q.csv", "image,question\nstudy1/image1.png,A?,extra\n", "q.csv:2: more fields"),
    ("q.jsonl", '{"image": "study1/image1.png", "question": "A?"}\n{"image": "study1/image1.png"}\n', "q.jsonl:2: no 'question'"),
    ("q.jsonl", '{"image": "study1/image1.png", "question": "A?", "answer": "yes"}\n', "q.jsonl:1: unknown column 'answer'"),
    ("q.jsonl", '{"image": ["study1/image1.png"], "question": "A?"}\n', "q.jsonl:1: 'image' must be text"),
    ("q.jsonl", '{"image": "study1/image1.png", "question": "A?"\n', "q.jsonl:1: malformed JSON"),
    ("q.txt", "image,question\n", "expected a .csv or .jsonl file"),
])
def test_mistakes_name_the_file_and_line(folder, tmp_path, name, text, expected):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as err:
        questions_samples(tmp_path / name, folder)
    assert expected in str(err.value)


def test_questions_needs_an_images_folder_and_no_question(tmp_path, capsys):
    (tmp_path / "q.csv").write_text("image,question\na.png,A?\n")
    common = ["infer", "tiny-demo", "--questions", str(tmp_path / "q.csv"), "--out", str(tmp_path / "p.jsonl")]
    assert main([*common, "--data", str(tmp_path)]) == 2
    assert "--questions goes with --images" in capsys.readouterr().err
    assert main([*common, "--images", str(tmp_path), "--question", "B?"]) == 2
    assert "one of --question" in capsys.readouterr().err
