"""Small copies of each public dataset layout, written into a temporary folder.

Each helper mirrors the real release's file names, field names and quirks (trailing spaces,
"NULL" strings, integer answers, "Anwser", leading-space captions ...), with tiny images whose
pixels differ per name so that content hashing tells them apart.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "datasets"


def write_image(path: Path, seed: str, fmt: str | None = None, size=(12, 10)) -> Path:
    """A small RGB image whose content depends on `seed` (distinct names -> distinct bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
        path, format=fmt or ("PNG" if path.suffix.lower() == ".png" else "JPEG"))
    return path


def image_bytes(seed: str, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _osf_record(qid, phrase, image, question, answer, answer_type, organ="HEAD"):
    return {"qid": qid, "phrase_type": phrase, "qid_linked_id": "NULL", "image_case_url": "https://medpix.nlm.nih.gov/case?id=x",
            "image_name": image, "image_organ": organ, "evaluation": "NULL", "question": question,
            "question_rephrase": "NULL", "question_relation": "NULL", "question_frame": "NULL",
            "question_type": "PRES", "answer": answer, "answer_type": answer_type}


def make_vqa_rad_osf(root: Path) -> Path:
    """The OSF release: one JSON list + a flat image folder with a space in its name."""
    records = [
        _osf_record(1, "freeform", "synpic1.jpg", "Is there a fracture?", "Yes", "CLOSED"),
        _osf_record(2, "para", "synpic1.jpg", "Is a fracture present?", "yes", "CLOSED "),
        _osf_record(3, "freeform", "synpic2.jpg", "How many lesions?", 2, "OPEN", organ="CHEST"),
        _osf_record(4, "test_freeform", "synpic2.jpg", "What organ is this?", "Lung", "OPEN", organ="CHEST"),
        _osf_record(5, "test_para", "synpic3.jpg", "Is this an MRI?", "No", "closed"),
    ]
    (root / "VQA_RAD Dataset Public.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "VQA_RAD Dataset Public.json").write_text(json.dumps(records, indent=1))
    for name in ("synpic1.jpg", "synpic2.jpg", "synpic3.jpg"):
        write_image(root / "VQA_RAD Image Folder" / name, name)
    return root


def make_slake(root: Path, validation_name: str = "validate.json") -> Path:
    """The SLAKE annotation sample (real records) plus placeholder images at imgs/xmlabN/source.jpg."""
    sample = SHARED / "slake-annotations-sample"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train.json", "validate.json", "test.json"):
        shutil.copyfile(sample / name, root / (validation_name if name == "validate.json" else name))
    names = {r["img_name"] for n in ("train.json", "validate.json", "test.json") for r in json.loads((sample / n).read_text())}
    for name in names:
        write_image(root / "imgs" / name, name)
    return root


def make_pathvqa(root: Path) -> Path:
    base = root / "split"
    rows = {
        "train": [{"image": "train_0422", "question": "Is this tissue necrotic?", "answer": "yes"},
                  {"image": "train_0423", "question": "What is shown?", "answer": "granuloma"}],
        "val": [{"image": "val_0001", "question": "Where is this?", "answer": "liver"}],
        "test": [{"image": "test_0007", "question": "Is inflammation present?", "answer": "no"}],
    }
    for split, recs in rows.items():
        (base / "qas" / split).mkdir(parents=True, exist_ok=True)
        with open(base / "qas" / split / f"{split}_qa.pkl", "wb") as handle:
            pickle.dump(recs, handle)
        for rec in recs:
            write_image(base / "images" / split / f"{rec['image']}.jpg", rec["image"])
    return root


class CallsPrint:
    """Pickles as a call to print(): a stand-in for a pickle that runs code when loaded."""

    def __reduce__(self):
        return (print, ("this must never run",))


def make_hf_parquet(root: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    shared = image_bytes("shared-image")
    shards = {
        "train-00000-of-00001.parquet": [(shared, "a.png", "Is there a mass?", "yes"),
                                         (shared, "a.png", "What organ?", "liver"),
                                         (image_bytes("other", "JPEG"), "b.jpg", "Is it normal?", "No")],
        "validation-00000-of-00001.parquet": [(image_bytes("val"), None, "Which side?", "left")],
        "test-00000-of-00001.parquet": [(image_bytes("test"), "t.png", "Is this a CT?", "yes")],
    }
    for name, rows in shards.items():
        table = pa.table({
            "image": [{"bytes": b, "path": p} for b, p, _, _ in rows],
            "question": [q for _, _, q, _ in rows],
            "answer": [a for _, _, _, a in rows],
        })
        pq.write_table(table, data / name)
    return root


def make_r2gen(root: Path, mimic: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if mimic:
        def rec(i, split, n):
            paths = [f"p10/p1000{i}/s5{i}/view{k}.jpg" for k in range(n)]
            return {"id": f"dicom{i}", "study_id": 50000 + i, "subject_id": 10000 + i,
                    "report": f"No acute process {i}.", "image_path": paths, "split": split}
    else:
        def rec(i, split, n):
            paths = [f"CXR{i}_IM-000{i}/{k}.png" for k in range(n)]
            return {"id": f"CXR{i}_IM-000{i}", "report": f"The heart is normal in size {i}.", "image_path": paths, "split": split}
    annotation = {"train": [rec(1, "train", 2), rec(2, "train", 2)], "val": [rec(3, "val", 2)], "test": [rec(4, "test", 1)]}
    (root / "annotation.json").write_text(json.dumps(annotation))
    for recs in annotation.values():
        for r in recs:
            for p in r["image_path"]:
                write_image(root / "images" / p, p)
    return root


OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
  <meta type="rr"/>
  <uId id="CXR{n}"/>
  <MedlineCitation Owner="Indiana University" Status="supplied">
    <Article PubModel="Electronic">
      <Abstract>
        <AbstractText Label="COMPARISON">None.</AbstractText>
        <AbstractText Label="INDICATION">XXXX-year-old with cough.</AbstractText>
        <AbstractText Label="FINDINGS">{findings}</AbstractText>
        <AbstractText Label="IMPRESSION">No active disease {n}.</AbstractText>
      </Abstract>
    </Article>
  </MedlineCitation>
  <MeSH><major>normal</major></MeSH>
  {images}
</eCitation>
"""


def make_openi_xml(root: Path, studies: int = 10, empty_findings: tuple[int, ...] = ()) -> Path:
    (root / "ecgen-radiology").mkdir(parents=True, exist_ok=True)
    for n in range(1, studies + 1):
        ids = [f"CXR{n}_1_IM-000{n}-1001", f"CXR{n}_1_IM-000{n}-2001"]
        images = "\n  ".join(f'<parentImage id="{i}"><figureId>F{k}</figureId></parentImage>' for k, i in enumerate(ids, 1))
        findings = "" if n in empty_findings else f"The lungs are clear {n}."
        (root / "ecgen-radiology" / f"{n}.xml").write_text(OPENI_XML.format(n=n, findings=findings, images=images))
        for i in ids:
            write_image(root / "NLMCXR_png" / f"{i}.png", i)
    return root


def make_openi_csv(root: Path, studies: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "indiana_reports.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"])
        for n in range(1, studies + 1):
            w.writerow([n, "normal;Cardiomegaly/mild", "normal", "Xray Chest PA and Lateral", "Cough", "None.",
                        f"The cardiac silhouette is normal {n},\nlungs clear.", f"Normal chest {n}."])
    with open(root / "indiana_projections.csv", "w", newline="") as handle:
        w = csv.writer(handle)
        w.writerow(["uid", "filename", "projection"])
        for n in range(1, studies + 1):
            for k, proj in ((1, "Frontal"), (2, "Lateral")):
                name = f"{n}_IM-000{n}-{k}001.dcm.png"
                w.writerow([n, name, proj])
                write_image(root / "images" / "images_normalized" / name, name)
    return root


def make_roco(root: Path) -> Path:
    for split, ids in (("train", ["ROCO_00001", "ROCO_00002"]), ("validation", ["ROCO_00003"]), ("test", ["ROCO_00004"])):
        folder = root / "data" / split / "radiology"
        folder.mkdir(parents=True, exist_ok=True)
        # the real files put a space after the tab
        (folder / "captions.txt").write_text("".join(f"{i}\t Computed tomography of the chest {i}. \n" for i in ids))
        for i in ids:
            write_image(folder / "images" / f"{i}.jpg", i)
    return root


def make_captions(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    recs = [{"image": f"img/{k}.png", "caption": f"Axial CT slice {k}."} for k in range(10)]
    (root / "captions.json").write_text(json.dumps(recs))
    for r in recs:
        write_image(root / r["image"], r["image"])
    return root


def make_pmc_vqa(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    header = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
    rows = {"train.csv": [["PMC1_F1.jpg", "What plane is shown?", "Axial", "A:Sagittal ", "B:Axial ", "C:Coronal ", "D:Oblique ", "B"],
                          ["PMC2_F2.jpg", "Is contrast used?", "Yes", "A:Yes", "B:No", "", "", "A"]],
            "test.csv": [["PMC3_F1.jpg", "Which modality?", "MRI", "A:CT", "B:MRI", "C:PET", "D:US", "B"]]}
    for name, body in rows.items():
        with open(root / name, "w", newline="") as handle:
            w = csv.writer(handle)
            # test.csv of the release misspells the answer column
            w.writerow(header if name == "train.csv" else [("Anwser" if h == "Answer" else h) for h in header])
            w.writerows(body)
            for r in body:
                write_image(root / "images" / r[0], r[0])
    return root


def make_llava_med(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    train = [
        {"id": "q1", "image": "a.jpg", "answer_type": "CLOSED",
         "conversations": [{"from": "human", "value": "<image>\nIs there an effusion?"}, {"from": "gpt", "value": "yes"}]},
        {"id": "q2", "image": "b.jpg",
         "conversations": [{"from": "human", "value": "What is seen?\n<image>"}, {"from": "gpt", "value": "A mass in the lung."},
                           {"from": "human", "value": "Is it large?"}, {"from": "gpt", "value": "No"}]},
    ]
    test = [{"id": "t1", "image": "c.jpg", "answer_type": "OPEN",
             "conversations": [{"from": "human", "value": "<image>\nWhich organ?"}, {"from": "gpt", "value": "liver"}]}]
    (root / "train.json").write_text(json.dumps(train))
    (root / "test.json").write_text(json.dumps(test))
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(root / name, name)
    return root
