"""Issue 21, "Nothing kept is trusted blindly": each defect the fault and fuzz campaign found in
the readers of user files and of a kept DATA_DIR, checked where the user meets it.

Each case runs the installed `pefomed` script (a subprocess, as typed) on a small input built here
from the bundled demo images, and must end in exit 2 with one `error:` line naming the file (and
the line, column, field or sample id) and no traceback. Variants that the command line adds
nothing to are checked in-process (`pefomed.cli.app.main` or the reader itself).

1. a column named twice in a CSV header (pmc-vqa, openi's two CSVs, `infer --questions`) and an
   unterminated quote;
2. a JSON number that overflows to infinity (`1e400`) in score's PRED.jsonl and in prepare's inputs;
3. `true`/`false` where text belongs (data-rad image_organ, slake location, jsonl id/answer_type);
4. folder format: dangling links and link loops are listed (--skip-bad) or refused, never dropped;
5. score's container fields of the wrong type (`"images": ""`, `"meta": ""`, `predictions`);
6. `pefomed import` of a text file and of a .pth with an integer key or a non-number config;
7. a DATA_DIR changed after prepare (an image replaced, a manifest count or file name edited).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from robust_checks import check_message, run_main

PEFOMED = shutil.which("pefomed")
pytestmark = pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")

DEMO = Path(__file__).resolve().parents[2] / "pefomed" / "resources" / "demo" / "vqa-rad-mini"
DEMO_IMAGES = sorted((DEMO / "images").glob("*.jpg"))
FAST_SCORE = ["--no-meteor", "--no-clinical", "--no-semantic", "--bootstrap", "20"]


def cli(*args, timeout: float = 180) -> tuple[int, str, str]:
    env = dict(os.environ, COLUMNS="400", NO_COLOR="1")
    proc = subprocess.run([PEFOMED, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def refused(result: tuple[int, str, str], *needles: str, label: str = "") -> str:
    """Exit 2, one error line, no traceback, and every needle in the message; returns stderr."""
    code, out, err = result
    assert code == 2, f"{label}: exit {code}, expected 2\n{out[-1500:]}\n{err[-1500:]}"
    check_message(code, out, err, label)
    for needle in needles:
        assert needle in err, f"{label}: {needle!r} not in the message:\n{err[-1500:]}"
    return err


def image(dest: Path, k: int = 0) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEMO_IMAGES[k % len(DEMO_IMAGES)], dest)
    return dest


def write_csv(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------ 1. CSV headers and quotes

def _pmc_vqa(root: Path, header: str) -> Path:
    image(root / "images" / "PMC1_F1.jpg", 0)
    image(root / "images" / "PMC2_F2.jpg", 1)
    write_csv(root / "train.csv", [header, "PMC1_F1.jpg,What plane is shown?,Axial,Is contrast used?",
                                   "PMC2_F2.jpg,Which modality?,MRI,Is it normal?"])
    return root


def _openi_csv(root: Path, reports_header: str, projections_header: str) -> Path:
    for n in (1, 2):
        image(root / "images" / "images_normalized" / f"{n}_IM-1.png", n)
    # a fifth reports column / a fourth projections column (the repeated one) gets a cell of its own
    extra = ",other" if len(reports_header.split(",")) == 5 else ""
    write_csv(root / "indiana_reports.csv", [reports_header] + [f"{n},normal,The lungs are clear {n}.,Normal {n}.{extra}"
                                                                for n in (1, 2)])
    extra = ",x.png" if len(projections_header.split(",")) == 4 else ""
    write_csv(root / "indiana_projections.csv", [projections_header] + [f"{n},{n}_IM-1.png,Frontal{extra}" for n in (1, 2)])
    return root


# (format, reports/train header, projections header, file, column, columns, through the console script)
HEADER_CASES = {
    # PMC-VQA: csv.DictReader kept the second `Question` column's cell as the question, silently
    "pmc-vqa": ("pmc-vqa", "Figure_path,Question,Answer,Question", None, "train.csv", "Question", "columns 2 and 4", True),
    # padded with spaces it is still the same column once stripped
    "pmc-vqa-padded": ("pmc-vqa", "Figure_path, Question,Answer,Question ", None, "train.csv", "Question", "columns 2 and 4", False),
    # Open-i's Kaggle pair: the reports file, then the projections file
    "openi-reports": ("openi", "uid,MeSH,findings,impression,findings", "uid,filename,projection", "indiana_reports.csv",
                      "findings", "columns 3 and 5", True),
    "openi-projections": ("openi", "uid,MeSH,findings,impression", "uid,filename,projection,filename",
                          "indiana_projections.csv", "filename", "columns 2 and 4", True),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_a_column_named_twice_is_refused_naming_the_file_and_columns(case, tmp_path, capsys):
    fmt, header, projections, name, column, columns, console = HEADER_CASES[case]
    src = _pmc_vqa(tmp_path / "src", header) if fmt == "pmc-vqa" else _openi_csv(tmp_path / "src", header, projections)
    args = ["prepare", src, "--format", fmt, "--out", tmp_path / "out"]
    result = cli(*args) if console else run_main(args, capsys)
    refused(result, f"{src / name}:1:", f"column {column!r} appears twice", columns, label=case)
    assert not (tmp_path / "out").exists()


def test_an_unterminated_quote_in_a_prepare_csv_names_the_row_it_opens(tmp_path, capsys):
    src = _pmc_vqa(tmp_path / "pmc", "Figure_path,Question,Answer,Choice A")
    text = (src / "train.csv").read_text().splitlines()
    text[2] = 'PMC2_F2.jpg,"Which modality?,MRI,A:CT'  # the quote is never closed: swallows the file
    write_csv(src / "train.csv", text + ["PMC1_F1.jpg,Is it normal?,yes,A:yes"])
    code, out, err = run_main(["prepare", src, "--format", "pmc-vqa", "--out", tmp_path / "out"], capsys)
    refused((code, out, err), f"{src / 'train.csv'}:3:", "unterminated quote", label="pmc-vqa quote")


QUESTIONS_CASES = {
    # `question` twice: the second silently replaced the first
    "repeated-column": (["image,question,question", "a.jpg,Is there a mass?,Which organ?"],
                        ":1:", ["'question' appears twice", "columns 2 and 3"]),
    # an unterminated quote: without strict parsing one question swallowed every later line
    "unterminated-quote": (["image,question", "a.jpg,Is there a mass?", 'b.jpg,"Which organ?', "a.jpg,Is it normal?",
                            "b.jpg,Any fracture?"], ":3:", ["unterminated quote"]),
}


@pytest.mark.parametrize("case", sorted(QUESTIONS_CASES))
def test_infer_questions_refuses_a_repeated_column_and_an_unterminated_quote(case, tmp_path):
    lines, line, needles = QUESTIONS_CASES[case]
    folder = tmp_path / "images"
    image(folder / "a.jpg", 0)
    image(folder / "b.jpg", 1)
    q = write_csv(tmp_path / "q.csv", lines)
    refused(cli("infer", "tiny-demo", "--images", folder, "--questions", q, "--out", tmp_path / "p.jsonl"),
            f"{q}{line}", *needles, label=case)
    assert not (tmp_path / "p.jsonl").exists()


def test_infer_questions_header_variants_in_process(tmp_path):
    from pefomed.errors import UserError
    from pefomed.infer.sources import questions_samples

    folder = tmp_path / "images"
    image(folder / "a.jpg")
    cases = {
        "image,question,id,id": "'id' appears twice",
        "image,image,question": "'image' appears twice",
        "image,question,reference,reference": "'reference' appears twice",
    }
    for header, needle in cases.items():
        q = write_csv(tmp_path / "q.csv", [header, ",".join(["a.jpg", "Is there a mass?", "x", "y"][:header.count(",") + 1])])
        with pytest.raises(UserError, match=needle):
            questions_samples(q, folder)
    q = write_csv(tmp_path / "q.csv", ["image,question,id", "a.jpg,Is there a mass?,one", "a.jpg,Which organ?,two"])
    assert [s.id for s in questions_samples(q, folder)[0]] == ["one", "two"]  # a plain header still reads


# ------------------------------------------------------------------ 2. JSON numbers overflowing to inf

def _pred_rows() -> list[dict]:
    return [{"id": f"q{i}", "task": "vqa", "question": f"Is there a mass {i}?", "prediction": "yes", "reference": "yes" if i % 2 else "no",
             "answer_type": "closed", "images": [f"images/{i}.png"], "meta": {"organ": "HEAD" if i % 2 else "CHEST"}}
            for i in range(4)]


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E+309", "12345e999"])
def test_a_number_overflowing_to_infinity_is_refused_by_score(number, tmp_path, capsys):
    lines = [json.dumps(r) for r in _pred_rows()]
    lines[2] = lines[2].replace('"HEAD"', number).replace('"CHEST"', number)  # meta.organ: was an `organ/inf` group
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(lines) + "\n")
    args = ["score", pred, "--out", tmp_path / "m.json", *FAST_SCORE]
    refused(cli(*args) if number == "1e400" else run_main(args, capsys), f"{pred}:3:", number, "overflows", label=number)
    assert not (tmp_path / "m.json").exists()


def test_a_large_finite_number_is_still_a_number(tmp_path, capsys):
    lines = [json.dumps(r) for r in _pred_rows()]
    lines[0] = lines[0][:-1] + ', "confidence": 1.5e308, "tiny": 1e-400}'
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(lines) + "\n")
    code, out, err = run_main(["score", pred, "--out", tmp_path / "m.json", *FAST_SCORE], capsys)
    assert code == 0, err


def _jsonl_source(root: Path, rows: list[dict]) -> Path:
    for k, row in enumerate(rows):
        image(root / f"img/{k}.jpg", k)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def _jsonl_rows(n: int = 3) -> list[dict]:
    return [{"id": f"x{k}", "question": f"Is there a finding {k}?", "answer": "yes" if k % 2 else "no",
             "image": f"img/{k}.jpg"} for k in range(n)]


def _data_rad_copy(root: Path) -> Path:
    shutil.copytree(DEMO, root)
    return root


def test_a_number_overflowing_to_infinity_is_refused_by_prepare_jsonl(tmp_path):
    src = _jsonl_source(tmp_path / "jl", _jsonl_rows())
    text = src.read_text().splitlines()
    text[1] = text[1][:-1] + ', "score": 1e400}'
    src.write_text("\n".join(text) + "\n")
    refused(cli("prepare", src, "--format", "jsonl", "--out", tmp_path / "out"), f"{src}:2:", "overflows", label="jsonl")
    assert not (tmp_path / "out").exists()


def test_a_number_overflowing_to_infinity_is_refused_by_prepare_json(tmp_path):
    # data-rad's JSON list (read_json): the file and the line of the number
    src = _data_rad_copy(tmp_path / "rad")
    records = json.loads((src / "trainset.json").read_text())
    records[3]["qid"] = "__X__"
    text = json.dumps(records, indent=1).replace('"__X__"', "1e400")
    (src / "trainset.json").write_text(text)
    line = text[:text.index("1e400")].count("\n") + 1
    refused(cli("prepare", src, "--format", "data-rad", "--out", tmp_path / "out"), f"{src / 'trainset.json'}:{line}:",
            "overflows", label="data-rad")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 3. true/false where text belongs

def _slake(root: Path, location) -> Path:
    rec = lambda qid, img, loc: {"qid": qid, "img_name": img, "question": "Which organ is shown?", "answer": "Lung",  # noqa: E731
                                 "q_lang": "en", "answer_type": "OPEN", "location": loc, "modality": "CT",
                                 "content_type": "Organ", "base_type": "vqa", "img_id": qid}
    (root / "imgs").mkdir(parents=True)
    (root / "train.json").write_text(json.dumps([rec(1, "xmlab1/source.jpg", "Chest"), rec(2, "xmlab1/source.jpg", location)]))
    (root / "test.json").write_text(json.dumps([rec(3, "xmlab2/source.jpg", "Chest")]))
    image(root / "imgs" / "xmlab1" / "source.jpg", 0)
    image(root / "imgs" / "xmlab2" / "source.jpg", 1)
    return root


def _bool_source(case: str, root: Path) -> tuple[Path, str, str]:
    """(source, format, where the message must point) with one true/false where text belongs."""
    if case == "data-rad-image_organ":  # `true` used to read as "no organ", the sample kept without it
        src = _data_rad_copy(root)
        records = json.loads((src / "trainset.json").read_text())
        records[5]["image_organ"] = True
        (src / "trainset.json").write_text(json.dumps(records))
        return src, "data-rad", f"{src / 'trainset.json'}: record 5"
    if case == "slake-location":
        src = _slake(root, False)
        return src, "slake", f"{src / 'train.json'}: record 1"
    key, value = {"jsonl-id": ("id", True), "jsonl-answer_type": ("answer_type", False)}[case]
    rows = _jsonl_rows()  # id: was replaced by the made-up id "train-2"; answer_type: was inferred
    rows[1][key] = value
    src = _jsonl_source(root, rows)
    return src, "jsonl", f"{src}:2:"


@pytest.mark.parametrize("case", ["data-rad-image_organ", "slake-location", "jsonl-id", "jsonl-answer_type"])
def test_true_or_false_where_text_belongs_is_refused_naming_the_field(case, tmp_path):
    src, fmt, where = _bool_source(case, tmp_path / "src")
    field = case.split("-", 1)[1].removeprefix("rad-")
    refused(cli("prepare", src, "--format", fmt, "--out", tmp_path / "out"), where, f"'{field}' must be text",
            "got true/false", label=case)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ 4. folder format: broken links

def test_broken_links_in_a_folder_source_are_listed_or_refused_never_dropped(tmp_path):
    src = tmp_path / "reports"
    for split in ("train", "test"):
        for k in (0, 1):
            image(src / split / f"case{k}.jpg", k).with_suffix(".txt").write_text(f"The lungs are clear {k}.")
    (src / "train" / "dangling.jpg").symlink_to("nothing-here.jpg")
    (src / "train" / "dangling.txt").write_text("A report whose image is gone.")
    (src / "train" / "loop1.png").symlink_to("loop2.png")
    (src / "train" / "loop2.png").symlink_to("loop1.png")
    (src / "folder.png").mkdir()  # a folder named like an image is no image: ignored, as before
    (src / "train" / "to-a-folder.png").symlink_to(src / "folder.png")
    broken = ["train/dangling", "train/loop1", "train/loop2", "train/to-a-folder"]

    err = refused(cli("prepare", src, "--format", "folder", "--out", tmp_path / "refused"), "4 image(s)", *broken,
                  "--skip-bad", label="folder links")
    assert "link loop" in err and "not a file" in err
    assert not (tmp_path / "refused").exists()

    code, out, err = cli("prepare", src, "--format", "folder", "--out", tmp_path / "data", "--skip-bad")
    assert code == 0, err
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    skipped = {entry["id"]: entry["reason"] for entry in manifest["skipped"]}
    assert sorted(skipped) == broken, manifest["skipped"]
    assert "missing file or a link loop" in skipped["train/loop1"] and "not a file" in skipped["train/to-a-folder"]
    assert manifest["splits"]["train"]["samples"] == 2 and manifest["splits"]["test"]["samples"] == 2


# ------------------------------------------------------------------ 5. score's container fields

# (key, value, through the console script): the three as typed, the rest in-process
CONTAINER_CASES = [("images", "", True), ("meta", "", True), ("predictions", "yes", True), ("predictions", [1, 2], False),
                   ("predictions", [], False), ("images", {"a": 1}, False), ("meta", ["organ"], False),
                   ("references", "", False)]


@pytest.mark.parametrize("key,value,console", CONTAINER_CASES, ids=[f"{k}={v!r}" for k, v, _ in CONTAINER_CASES])
def test_score_refuses_container_fields_of_the_wrong_type_naming_line_and_field(key, value, console, tmp_path, capsys):
    rows = _pred_rows()
    rows[1][key] = value
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["score", pred, "--out", tmp_path / "m.json", *FAST_SCORE]
    refused(cli(*args) if console else run_main(args, capsys), f"{pred}:2:", f"field '{key}'", label=f"{key}={value!r}")
    assert not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------ 6. pefomed import of non-checkpoints

IMPORT_RECIPE = "pefomed-paper/stage2-vqa-rad"  # composed + LoRA: the file is read before any base is loaded


def _import_file(case: str, path: Path) -> list[str]:
    """Write the case's file; returns what the message must say."""
    import torch

    if case == "text-file":  # was KeyError: 101
        path.write_text("hello, these are my training notes\nepoch 1 loss 0.3\n")
        return ["not a readable PyTorch checkpoint", "text file"]
    if case == "json-file":  # was "refused: ... could run code", for a JSON file
        path.write_text(json.dumps({"model": {"llama_proj.bias": [0.0]}}))
        return ["not a readable PyTorch checkpoint", "text file"]
    if case == "integer-key":  # was TypeError
        torch.save({"model": {0: torch.zeros(2), "llama_proj.bias": torch.zeros(2)}, "epoch": 1}, path)
        return ["weight names must be strings", "int key 0"]
    config = {"lora-r-text": {"model": {"lora_r": "abc"}},  # was ValueError: invalid literal for int()
              "lora-alpha-list": {"model": {"lora_r": 64, "lora_alpha": [16]}}}[case]  # was TypeError
    torch.save({"model": {"llama_proj.bias": torch.zeros(2)}, "config": config}, path)
    return [f"config.model.{'lora_r' if 'lora-r' in case else 'lora_alpha'} must be a number"]


@pytest.mark.parametrize("case", ["text-file", "integer-key", "json-file", "lora-r-text", "lora-alpha-list"])
def test_import_of_a_text_file_or_an_odd_checkpoint_is_one_message(case, tmp_path, capsys):
    path = tmp_path / "released.pth"
    needles = _import_file(case, path)
    args = ["import", path, IMPORT_RECIPE, "--out", tmp_path / "run"]
    err = refused(cli(*args) if case == "text-file" else run_main(args, capsys), str(path), *needles, label=case)
    assert "arbitrary unpickling" not in err  # none of these is a hostile pickle
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ 7. a DATA_DIR changed after prepare

@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from pefomed.data.prepare import prepare
    from pefomed.demo import demo_source

    out = tmp_path_factory.mktemp("integrity") / "data"
    prepare(demo_source(), "data-rad", out)
    return out


def _copy(prepared: Path, dest: Path) -> Path:
    shutil.copytree(prepared, dest)
    return dest


def _first_image(data_dir: Path, split: str) -> str:
    return json.loads((data_dir / f"{split}.jsonl").read_text().splitlines()[0])["images"][0]


def _edit_manifest(data_dir: Path, edit) -> None:
    path = data_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _same_size(data_dir: Path) -> tuple[str, list[str]]:
    rel = _first_image(data_dir, "train")  # one byte changed: only the sha256 tells
    data = bytearray((data_dir / rel).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (data_dir / rel).write_bytes(bytes(data))
    return "train", [rel, "changed since prepare", "sha256 differs"]


def _other_size(data_dir: Path) -> tuple[str, list[str]]:
    rel = _first_image(data_dir, "test")  # replaced by another image
    shutil.copyfile(next(p for p in DEMO_IMAGES if p.stat().st_size != (data_dir / rel).stat().st_size), data_dir / rel)
    return "test", [rel, "changed since prepare", "size differs"]


def _count_edited(data_dir: Path) -> tuple[str, list[str]]:
    _edit_manifest(data_dir, lambda m: m["splits"]["train"].update(samples=m["splits"]["train"]["samples"] - 1))
    return "train", [str(data_dir / "manifest.json"), "splits.train.samples is 287", "holds 288"]


def _file_outside(data_dir: Path) -> tuple[str, list[str]]:
    _edit_manifest(data_dir, lambda m: m["splits"]["test"].update(file="../x/test.jsonl"))
    return "test", [str(data_dir / "manifest.json"), "splits.test.file is '../x/test.jsonl'"]


# (the edit, the command that meets it): both read the split through records.read_split; infer
# starts faster (no DeepSpeed), so train is run for one case
TAMPER_CASES = {"image-same-size": (_same_size, "train"), "image-other-size": (_other_size, "infer"),
                "manifest-samples": (_count_edited, "infer"), "split-file-outside": (_file_outside, "infer")}


@pytest.mark.parametrize("case", sorted(TAMPER_CASES))
def test_a_data_dir_changed_after_prepare_is_refused_by_train_and_infer(case, prepared, tmp_path):
    data_dir = _copy(prepared, tmp_path / "data")
    tamper, command = TAMPER_CASES[case]
    split, needles = tamper(data_dir)
    if command == "train":
        assert split == "train"
        result = cli("train", "tiny-demo", "--data", data_dir, "--out", tmp_path / "run")
    else:
        result = cli("infer", "tiny-demo", "--data", data_dir, "--split", split, "--out", tmp_path / "p.jsonl")
    refused(result, *needles, label=case)
    assert not (tmp_path / "run" / "adapter").exists() and not (tmp_path / "p.jsonl").exists()


def _append_byte(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(b"\0")


# more edits, in-process: each refused by read_split (what train and infer call), naming the file
MORE_TAMPERING = {
    "samples-true": (lambda d: _edit_manifest(d, lambda m: m["splits"]["train"].update(samples=True)),
                     "manifest.json: splits.train.samples is True"),
    "file-absolute": (lambda d: _edit_manifest(d, lambda m: m["splits"]["train"].update(file="/etc/train.jsonl")),
                      "manifest.json: splits.train.file is '/etc/train.jsonl'"),
    "digest-count": (lambda d: _edit_manifest(d, lambda m: m["image_digests"].update(images=3)),
                     "manifest.json: image_digests.images is 3"),
    "digests-file-edited": (lambda d: (d / "image_digests.jsonl").write_text(
        (d / "image_digests.jsonl").read_text().replace('"size": ', '"size": 1')), "image_digests.jsonl: changed since prepare"),
    "image-removed": (lambda d: (d / _first_image(d, "train")).unlink(), "cannot read"),
    "image-appended": (lambda d: _append_byte(d / _first_image(d, "train")), "changed since prepare wrote it (size differs"),
}


@pytest.mark.parametrize("case", sorted(MORE_TAMPERING))
def test_more_tampering_is_refused_in_process(case, prepared, tmp_path):
    from pefomed.errors import UserError
    from pefomed.records import read_split

    tamper, needle = MORE_TAMPERING[case]
    data_dir = _copy(prepared, tmp_path / "data")
    tamper(data_dir)
    with pytest.raises(UserError) as caught:
        read_split(data_dir, "train")
    assert needle in str(caught.value) and str(data_dir) in str(caught.value), str(caught.value)


def test_an_untouched_data_dir_still_reads(prepared, tmp_path):
    from pefomed.records import read_split

    untouched = _copy(prepared, tmp_path / "untouched")  # a copy: its own path, verified afresh
    assert len(read_split(untouched, "train")) == 288 and len(read_split(untouched, "test")) == 61
    assert len(read_split(prepared, "train")) == 288


def test_each_image_is_hashed_once_per_split(prepared, tmp_path, monkeypatch):
    import pefomed.records as records

    data_dir = _copy(prepared, tmp_path / "data")  # a new path: not yet verified in this process
    hashed: list[str] = []
    real = records.sha256_file
    monkeypatch.setattr(records, "sha256_file", lambda path: hashed.append(str(path)) or real(path))
    samples = records.read_split(data_dir, "train")
    images = {rel for s in samples for rel in s.images}
    assert len(samples) > len(images)  # VQA: several questions per image
    assert sorted(hashed) == sorted(str(data_dir / rel) for rel in images)
    hashed.clear()
    records.read_split(data_dir, "train")  # once per DATA_DIR and split in a process
    assert hashed == []
