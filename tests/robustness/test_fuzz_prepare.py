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
