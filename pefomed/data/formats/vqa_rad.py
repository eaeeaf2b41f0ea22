"""`vqa-rad`: the official OSF release of VQA-RAD (osf.io/89kps, CC0).

Layout: `VQA_RAD Dataset Public.json` (one flat list of 2,248 records, 14 fields) and the flat
folder `VQA_RAD Image Folder/`. Split rule: phrase_type `test_freeform` / `test_para` is test
(451), `freeform` / `para` is train (1,797); there is no validation split.
Quirks handled: integer answers, answer_type "CLOSED " with a trailing space, the string "NULL"
for empty fields, mixed casing (answers are kept as written; scoring normalizes).
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import (answer_text, answer_type_of, clean, compact, id_field, need_keys, need_list,
                                          text_field)
from pefomed.errors import UserError
from pefomed.io import short
from pefomed.io import read_json
from pefomed.records import Sample

JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_DIR = "VQA_RAD Image Folder"
REQUIRED = ("qid", "phrase_type", "image_name", "question", "answer", "answer_type")
SPLIT_OF_PHRASE = {"freeform": "train", "para": "train", "test_freeform": "test", "test_para": "test"}


@register("vqa-rad")
def read_vqa_rad(source: Path, options: PrepareOptions) -> SourceSplits:
    path = source / JSON_NAME if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"{source}: not the VQA-RAD OSF release, {JSON_NAME!r} not found",
                        hint="for the trainset.json/testset.json layout use `format` data-rad")
    folder = path.parent
    image_dir = options.images or folder / IMAGE_DIR
    if not image_dir.is_dir():
        raise UserError(f"{folder}: image folder {IMAGE_DIR!r} not found (or pass `images`)")
    records = need_list(read_json(path), path)
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for index, rec in enumerate(records):
        where = f"{path}: record {index}"
        need_keys(rec, REQUIRED, where)
        qid = id_field(rec["qid"], where, "qid")
        where = f"{where} (qid {qid})"
        phrase = (clean(rec["phrase_type"], where, "phrase_type") or "").lower()
        if phrase not in SPLIT_OF_PHRASE:
            raise UserError(f"{where}: phrase_type {short(rec['phrase_type'], 60)} is none of {', '.join(SPLIT_OF_PHRASE)}")
        image_name = clean(rec["image_name"], where, "image_name")
        # "NULL" is the release's spelling of an empty question; JSON null is not text at all
        question = clean(text_field(rec["question"], where, "question"), where, "question")
        if image_name is None:
            raise UserError(f"{where}: no image_name")
        meta = {
            "qid": rec["qid"],
            "organ": clean(rec.get("image_organ"), where, "image_organ"),
            "question_type": clean(rec.get("question_type"), where, "question_type"),
            "phrase_type": phrase,
            "qid_linked_id": clean(rec.get("qid_linked_id"), where, "qid_linked_id"),
            "evaluation": clean(rec.get("evaluation"), where, "evaluation"),
            "image_case_url": clean(rec.get("image_case_url"), where, "image_case_url"),
            "language": "en",
        }
        splits[SPLIT_OF_PHRASE[phrase]].append(Sample(
            id=f"vqa-rad-{qid}",
            task="vqa",
            images=[str(image_dir / image_name)],
            question=question or "",
            answer=answer_text(rec["answer"], where),
            answer_type=answer_type_of(rec["answer_type"], where),
            meta=compact(meta),
        ))
    return SourceSplits(splits=splits, root=image_dir)
