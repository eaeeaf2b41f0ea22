"""Fuzz `pefomed prepare`: every format, its annotation files and its images, malformed.

Each case starts from a small valid copy of the format's layout (tests/data/dataset_fixtures.py),
applies one seeded mutation (fuzzlib) and runs `pefomed prepare` in-process. It must end in exit
0 with a DATA_DIR that reads back whole and correct, or exit 2 with one error line and no
DATA_DIR at all; a pickle that carries a callable must never run it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import random
from pathlib import Path

import pytest

import fuzzlib
from dataset_fixtures import (make_captions, make_hf_parquet, make_llava_med, make_openi_csv, make_openi_xml,
                              make_pathvqa, make_pmc_vqa, make_r2gen, make_roco, make_vqa_rad_osf, write_image)
from robust_checks import check_data_dir, check_message, no_staging_left, run_main


def make_data_rad(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rec = lambda qid, img, q, a, t: {"qid": qid, "image_name": img, "image_organ": "HEAD", "answer": a,  # noqa: E731
                                     "answer_type": t, "question_type": "PRES", "question": q, "phrase_type": "freeform"}
    (root / "trainset.json").write_text(json.dumps([rec(1, "synpic1.jpg", "Is there a mass?", "yes", "CLOSED"),
                                                    rec(2, "synpic2.jpg", "How many?", 2, "OPEN")]))
    (root / "testset.json").write_text(json.dumps([rec(3, "synpic3.jpg", "Which organ?", "brain", "OPEN ")]))
    for name in ("synpic1.jpg", "synpic2.jpg", "synpic3.jpg"):
        write_image(root / "images" / name, name)
    return root


def make_slake(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rec = lambda qid, img, lang: {"qid": qid, "img_name": img, "question": "Which organ is shown?",  # noqa: E731
                                  "answer": "Lung", "q_lang": lang, "answer_type": "OPEN", "location": "Chest",
                                  "modality": "CT", "content_type": "Organ", "base_type": "vqa", "img_id": qid}
    for name, recs in (("train.json", [rec(1, "xmlab1/source.jpg", "en"), rec(2, "xmlab1/source.jpg", "zh")]),
                       ("validate.json", [rec(3, "xmlab2/source.jpg", "en")]),
                       ("test.json", [rec(4, "xmlab3/source.jpg", "en")])):
        (root / name).write_text(json.dumps(recs))
    for k in (1, 2, 3):
        write_image(root / "imgs" / f"xmlab{k}" / "source.jpg", f"slake{k}")
    return root


def make_jsonl(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 3), ("test", 2)):
        rows = [{"id": f"{split}-{i}", "question": f"Is there a finding {i}?", "answer": "yes" if i % 2 else "no",
                 "image": f"img/{split}{i}.png"} for i in range(n)]
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for r in rows:
            write_image(root / r["image"], r["image"])
    return root


def make_csv(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 3), ("test", 2)):
        with open(root / f"{split}.csv", "w", newline="") as handle:
            w = csv.writer(handle)
            w.writerow(["id", "question", "answer", "image"])
            for i in range(n):
                w.writerow([f"{split}-{i}", f"What is shown {i}?", f"finding {i}", f"img/{split}{i}.png"])
                write_image(root / "img" / f"{split}{i}.png", f"{split}{i}")
    return root


def make_folder(root: Path) -> Path:
    for split, n in (("train", 3), ("test", 2)):
        for i in range(n):
            image = write_image(root / split / f"case{i}.png", f"{split}{i}")
            image.with_suffix(".txt").write_text(f"The lungs are clear {i}.")
    return root


# name: (builder, extra args, annotation files relative to the source, kind)
FORMATS = {
    "vqa-rad": (make_vqa_rad_osf, [], ["VQA_RAD Dataset Public.json"], "json"),
    "data-rad": (make_data_rad, [], ["trainset.json", "testset.json"], "json"),
    "slake": (make_slake, [], ["train.json", "validate.json", "test.json"], "json"),
    "pathvqa": (make_pathvqa, [], ["split/qas/train/train_qa.pkl", "split/qas/val/val_qa.pkl"], "pickle"),
    "vqa-rad-hf": (make_hf_parquet, [], ["data/train-00000-of-00001.parquet"], "parquet"),
    "r2gen": (make_r2gen, [], ["annotation.json"], "json"),
    "openi": (make_openi_xml, [], ["ecgen-radiology/1.xml", "ecgen-radiology/2.xml"], "xml"),
    "openi-csv": (make_openi_csv, [], ["indiana_reports.csv", "indiana_projections.csv"], "csv"),
    "roco": (make_roco, [], ["data/train/radiology/captions.txt"], "text"),
    "captions": (make_captions, [], ["captions.json"], "json"),
    "pmc-vqa": (make_pmc_vqa, [], ["train.csv", "test.csv"], "csv"),
    "llava-med": (make_llava_med, [], ["train.json", "test.json"], "json"),
    "jsonl": (make_jsonl, [], ["train.jsonl", "test.jsonl"], "jsonl"),
    "csv": (make_csv, [], ["train.csv", "test.csv"], "csv"),
    "folder": (make_folder, [], ["train/case0.txt", "test/case1.txt"], "text"),
}


def _parses(path: Path, load) -> bool:
    try:
        load(path)
        return True
    except Exception:  # noqa: BLE001 - an earlier mutation of this case already broke the file
        return False


def _mutate_json(path: Path, rng: random.Random) -> str:
    if rng.random() < 0.6 and _parses(path, lambda p: json.loads(p.read_text())):
        doc, label = fuzzlib.mutate_doc(json.loads(path.read_text()), rng)
        path.write_text(fuzzlib.dump_doc(doc))
        return label
    data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return label


def _mutate_jsonl(path: Path, rng: random.Random) -> str:
    lines = path.read_text().splitlines() if _parses(path, lambda p: [json.loads(x) for x in p.read_text().splitlines()]) else []
    if rng.random() < 0.7 and lines:
        k = rng.randrange(len(lines))
        doc, label = fuzzlib.mutate_doc(json.loads(lines[k]), rng)
        lines[k] = fuzzlib.dump_doc(doc)
        if rng.random() < 0.2:
            lines.append(lines[0])  # a duplicate id
            label += " + duplicate line"
        path.write_text("\n".join(lines) + "\n")
        return label
    data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return label


def _mutate_csv(path: Path, rng: random.Random) -> str:
    rows = list(csv.reader(io.StringIO(path.read_text(), newline=""))) if _parses(path, lambda p: p.read_text()) else []
    op = rng.randrange(4)
    if op == 0 and len(rows) > 1:
        r = rng.randrange(len(rows))
        c = rng.randrange(len(rows[r]))
        value = fuzzlib.hostile(rng)
        rows[r][c] = value if isinstance(value, str) else json.dumps(value)
        label = f"cell {r},{c} -> {str(value)[:30]!r}"
    elif op == 1 and len(rows) > 1:
        rows[rng.randrange(1, len(rows))].append("extra")
        label = "ragged row"
    elif op == 2 and len(rows) > 1:
        rows[0] = [h.upper() for h in rows[0]]
        label = "header renamed"
    else:
        data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
        path.write_bytes(data)
        return label
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows(rows)
    # lone surrogates cannot be UTF-8: write them as the raw bytes a broken exporter would
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass"))
    return label


def _mutate_xml(path: Path, rng: random.Random) -> str:
    op = rng.randrange(4)
    if op == 0:  # billion laughs
        ents = "".join(f'<!ENTITY e{i} "{"&e%d;" % (i - 1) * 10 if i else "lol"}">' for i in range(10))
        path.write_text(f'<?xml version="1.0"?><!DOCTYPE x [{ents}]><eCitation>&e9;</eCitation>')
        return "entity expansion bomb"
    if op == 1:  # external entity
        path.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                        '<eCitation><uId id="CXR1"/><AbstractText Label="FINDINGS">&xxe;</AbstractText></eCitation>')
        return "external entity"
    if op == 2 and _parses(path, lambda p: p.read_text()):
        text = path.read_text()
        value = fuzzlib.hostile(rng)
        text = text.replace("The lungs are clear", str(value) if not isinstance(value, str) else value.replace("<", "&lt;"))
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        return "findings replaced"
    data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return label


def _mutate_pickle(path: Path, rng: random.Random, marker: Path) -> str:
    op = rng.randrange(6)
    if op == 0:
        fn = rng.choice([(open, (str(marker), "w")), (exec, (f"open({str(marker)!r}, 'w')",)),
                         (os.system, (f"touch {marker}",))])
        path.write_bytes(pickle.dumps([{"image": "train_0422", "question": "q", "answer": fuzzlib.Calls(fn[0], *fn[1])}]))
        return f"callable {fn[0].__name__}"
    if op == 1:
        path.write_bytes(fuzzlib.shared_list_bomb())
        return "shared-list bomb"
    if op == 2:
        path.write_bytes(fuzzlib.self_containing_pickle())
        return "self-containing list"
    # never pickle.loads here: an earlier mutation of the same case may have armed the file
    if op in (3, 4) and _parses(path, lambda p: json.dumps(fuzzlib.plain_loads(p.read_bytes()))):
        doc, label = fuzzlib.mutate_doc(fuzzlib.plain_loads(path.read_bytes()), rng)
        text = json.dumps(doc) if doc is not None else "null"
        doc = json.loads(text.replace(json.dumps(fuzzlib.DEEP), "[" * 200 + "]" * 200))
        path.write_bytes(pickle.dumps(doc, protocol=rng.choice([0, 2, 4, 5])))
        return label
    data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return label


def _mutate_parquet(path: Path, rng: random.Random) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if rng.random() < 0.6 and _parses(path, pq.read_table):
        rows = pq.read_table(path).to_pylist()
        row = rng.choice(rows)
        key = rng.choice(["image", "question", "answer"])
        value = rng.choice([None, "", fuzzlib.LONG, 7, {"bytes": b"junk", "path": "x.png"}, {"bytes": None, "path": None},
                            {"bytes": fuzzlib.png_header(100_000, 100_000), "path": "../../x.png"}])
        if key == "image" and not isinstance(value, dict):
            value = {"bytes": None, "path": None}
        if key != "image" and isinstance(value, dict):
            value = None
        row[key] = value
        try:
            columns = {k: [r[k] for r in rows] for k in rows[0]}
            pq.write_table(pa.table(columns), path)
            return f"{key} -> {str(value)[:30]!r}"
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
    data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return label


def _mutate_text(path: Path, rng: random.Random) -> str:
    if rng.random() < 0.3:
        path.unlink()
        return "removed"
    if rng.random() < 0.5:
        value = fuzzlib.hostile(rng)
        text = value if isinstance(value, str) else json.dumps(value)
        path.write_bytes(("ROCO_00001\t" + text + "\n").encode("utf-8", "surrogatepass"))
        return f"line -> {text[:30]!r}"
    data, label = fuzzlib.mutate_bytes(path.read_bytes(), rng)
    path.write_bytes(data)
    return label


def build_case(fmt: str, seed: int, tmp: Path) -> tuple[Path, list[str], str, Path]:
    builder, extra, files, kind = FORMATS[fmt]
    rng = random.Random(f"{fmt}:{seed}")
    src = builder(tmp / "src")
    marker = tmp / "callable-ran"
    args = ["--format", "openi" if fmt == "openi-csv" else fmt, *extra]
    if rng.random() < 0.3:
        args.append("--skip-bad")
    labels = []
    for _ in range(1 if rng.random() < 0.8 else 2):
        if rng.random() < 0.25:
            labels.append(fuzzlib.mutate_image_file(src, rng, tmp / "outside" / "secret.png"))
            continue
        path = src / rng.choice(files)
        if not path.exists():
            labels.append("file already removed")
            continue
        mutate = {"json": _mutate_json, "jsonl": _mutate_jsonl, "csv": _mutate_csv, "xml": _mutate_xml,
                  "parquet": _mutate_parquet, "text": _mutate_text}.get(kind)
        labels.append(_mutate_pickle(path, rng, marker) if kind == "pickle" else mutate(path, rng))
    return src, args, f"{fmt} seed {seed}: " + "; ".join(labels), marker


FORMAT_NAMES = sorted(FORMATS)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_prepare_fuzz(fmt, tmp_path_factory, capsys):
    if fmt == "vqa-rad-hf":
        pytest.importorskip("pyarrow")
    n = max(1, fuzzlib.cases("prepare") // len(FORMAT_NAMES))
    outcomes = {0: 0, 2: 0}
    for seed in range(n):
        tmp = tmp_path_factory.mktemp(f"{fmt}-{seed}")
        src, args, label, marker = build_case(fmt, seed, tmp)
        out = tmp / "prepared"
        code, stdout, stderr = run_main(["prepare", src, "--out", out, *args], capsys)
        check_message(code, stdout, stderr, label)
        assert not marker.exists(), f"{label}: a callable in the pickle ran"
        no_staging_left(out)
        if code == 0:
            check_data_dir(out, label, typed=FORMATS[fmt][3] in ("json", "jsonl", "pickle", "parquet"))
        else:
            assert not out.exists(), f"{label}: failed but left {out}"
        outcomes[code] += 1
    print(f"prepare {fmt}: {n} cases, {outcomes[0]} prepared, {outcomes[2]} refused")


# ---------------------------------------------------------------- CSV headers and JSON numbers (issue 21)
#
# Two families the mutations above rarely reach: a CSV header naming a column twice (csv.DictReader
# keeps the last cell of the two without a word) and a JSON number that overflows to infinity
# (json.loads reads 1e400 as inf). Separate tests with their own seeds, so the cases of
# test_prepare_fuzz stay the ones the recorded campaign ran.

CSV_FORMATS = {"csv": ["train.csv", "test.csv"], "pmc-vqa": ["train.csv", "test.csv"],
               "openi-csv": ["indiana_reports.csv", "indiana_projections.csv"]}
ODD_NAMES = ["", " ", "\ufeffid", 'a"b', "a,b", "ques\ntion", "x" * 300, "问题", "None", "0", "__proto__", "\t",
             "image ", " question", "QUESTION", "Question", "Answer", "uid", "findings", "filename", "id"]
OVERFLOWS = ["1e400", "-1e400", "1E+309", "2e308", "123456789e999", "0.5e310"]
FINITE = ["1.7976931348623157e308", "1e-400", "-0.0", "4.9e-324"]  # large, underflowing and tiny: all finite
JSON_FORMATS = sorted(f for f, spec in FORMATS.items() if spec[3] in ("json", "jsonl"))
SENTINEL = "__NUMBER_SENTINEL__"


def _mutate_csv_header(path: Path, rng: random.Random) -> tuple[str, bool]:
    """Repeat, rename or add header names (odd ones included); returns (label, whether the header
    now names a column twice once each name is stripped, as the readers strip it)."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))
    header, body = rows[0], rows[1:]
    op = rng.randrange(4)
    if op in (0, 2):  # insert a column: a repeated name (maybe padded) or an odd one
        name = (rng.choice(["", " ", "  "]) + rng.choice(header) + rng.choice(["", " "])) if op == 0 else rng.choice(ODD_NAMES)
        at = rng.randrange(len(header) + 1)
        header.insert(at, name)
        for row in body:  # hostile cell values, but UTF-8 ones: a bad byte is refused before the header is read
            value = fuzzlib.hostile(rng)
            text = value if isinstance(value, str) else json.dumps(value)
            row.insert(at, text if text.encode("utf-8", "replace").decode("utf-8") == text else "x")
        label = f"column {name[:30]!r} inserted at {at}"
    else:  # rename a column: to another column's name, or to an odd one
        at = rng.randrange(len(header))
        header[at] = rng.choice(header) if op == 1 else rng.choice(ODD_NAMES)
        label = f"column {at} renamed {header[at][:30]!r}"
    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([header, *body])
    path.write_bytes(buf.getvalue().encode("utf-8", "surrogatepass"))
    stripped = [h.strip() for h in header]
    return label, len(set(stripped)) < len(stripped)


@pytest.mark.parametrize("fmt", sorted(CSV_FORMATS))
def test_prepare_fuzz_csv_headers(fmt, tmp_path_factory, capsys):
    n = max(1, fuzzlib.cases("prepare") // 8)
    outcomes = {0: 0, 2: 0}
    for seed in range(n):
        tmp = tmp_path_factory.mktemp(f"header-{fmt}-{seed}")
        rng = random.Random(f"csv-header:{fmt}:{seed}")
        src = FORMATS[fmt][0](tmp / "src")
        name = rng.choice(CSV_FORMATS[fmt])
        label, repeated = _mutate_csv_header(src / name, rng)
        label = f"{fmt} header seed {seed}: {name}: {label}"
        out = tmp / "prepared"
        code, stdout, stderr = run_main(["prepare", src, "--out", out, "--format", "openi" if fmt == "openi-csv" else fmt,
                                         *(["--skip-bad"] if rng.random() < 0.3 else [])], capsys)
        check_message(code, stdout, stderr, label)
        no_staging_left(out)
        if repeated:
            assert code == 2 and "appears twice" in stderr and f"{src / name}:1:" in stderr, f"{label}: {stderr[-800:]}"
        if code == 0:
            check_data_dir(out, label, typed=False)
        else:
            assert not out.exists(), f"{label}: failed but left {out}"
        outcomes[code] += 1
    print(f"prepare {fmt} headers: {n} cases, {outcomes[0]} prepared, {outcomes[2]} refused")


def _put_number(path: Path, kind: str, rng: random.Random, number: str) -> str:
    """Write `number` as a JSON number at a random value position of the file (a random line of a
    JSONL file); returns where."""
    if kind == "jsonl":
        lines = path.read_text().splitlines()
        k = rng.randrange(len(lines))
        doc = json.loads(lines[k])
    else:
        doc = json.loads(path.read_text())
    positions = fuzzlib._containers(doc)
    container, key = rng.choice(positions)
    container[key] = SENTINEL
    text = json.dumps(doc, indent=rng.choice([None, 1])).replace(json.dumps(SENTINEL), number)
    if kind == "jsonl":
        lines[k] = text.replace("\n", " ")
        path.write_text("\n".join(lines) + "\n")
        return f"line {k + 1} [{key!r}]"
    path.write_text(text)
    return f"[{key!r}]"


@pytest.mark.parametrize("fmt", JSON_FORMATS)
def test_prepare_fuzz_number_overflow(fmt, tmp_path_factory, capsys):
    builder, extra, files, kind = FORMATS[fmt]
    n = max(1, fuzzlib.cases("prepare") // 8)
    refused = 0
    for seed in range(n):
        tmp = tmp_path_factory.mktemp(f"number-{fmt}-{seed}")
        rng = random.Random(f"number:{fmt}:{seed}")
        src = builder(tmp / "src")
        path = src / rng.choice(files)
        overflow = rng.random() < 0.75
        number = rng.choice(OVERFLOWS if overflow else FINITE)
        label = f"{fmt} number seed {seed}: {path.name} {_put_number(path, kind, rng, number)} = {number}"
        out = tmp / "prepared"
        code, stdout, stderr = run_main(["prepare", src, "--out", out, "--format", fmt, *extra], capsys)
        check_message(code, stdout, stderr, label)
        no_staging_left(out)
        if overflow:  # the whole file is parsed before any record is used: always refused, naming it
            assert code == 2 and "overflows to infinity" in stderr and str(path) in stderr, f"{label}: {stderr[-800:]}"
        else:
            assert "overflows" not in stderr, label
        if code == 0:
            check_data_dir(out, label)
        else:
            assert not out.exists(), f"{label}: failed but left {out}"
        refused += code == 2
    print(f"prepare {fmt} numbers: {n} cases, {refused} refused")
