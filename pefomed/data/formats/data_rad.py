"""`data-rad`: the VQA-RAD "data_RAD" layout read by MEVF, MUMC and PeFoMed.

Layout: trainset.json, testset.json (lists of records with qid, image_name, image_organ, answer,
answer_type, question_type, question, phrase_type) and images/synpicNNNNN.jpg.
Quirks handled: integer answers (qid 2485: 2), answer_type "CLOSED " with a trailing space,
mixed casing of answers. Train holds 1,267 templated "frame" rows that `--drop-frame` removes,
leaving the official 1,797.
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import answer_text, answer_type_of, clean, id_field, text_field
from pefomed.errors import UserError
from pefomed.io import read_json
from pefomed.records import Sample

FILES = {"train": "trainset.json", "test": "testset.json"}
REQUIRED = ("qid", "image_name", "question", "answer", "answer_type")


@register("data-rad")
def read_data_rad(source: Path, options: PrepareOptions) -> SourceSplits:
    if not source.is_dir():
        raise UserError(f"{source}: not a folder (data-rad expects trainset.json, testset.json and images/)")
    missing = [name for name in FILES.values() if not (source / name).is_file()]
    if missing:
        raise UserError(f"{source}: not a data-rad folder, missing {', '.join(missing)}")
    splits: dict[str, list[Sample]] = {}
    dropped_frame = 0
    for split, name in FILES.items():
        path = source / name
        records = read_json(path)
        if not isinstance(records, list):
            raise UserError(f"{path}: expected a JSON list of records")
        samples = []
        for index, rec in enumerate(records):
            where = f"{path}: record {index}"
            if not isinstance(rec, dict):
                raise UserError(f"{where}: expected an object")
            absent = [key for key in REQUIRED if key not in rec]
            if absent:
                raise UserError(f"{where}: missing {', '.join(absent)}")
            qid = id_field(rec["qid"], where, "qid")
            where = f"{where} (qid {qid})"
            if options.drop_frame and rec.get("phrase_type") == "frame":
                dropped_frame += 1
                continue
            answer_type = answer_type_of(rec["answer_type"], where)
            answer = answer_text(rec["answer"], where)
            image_name = text_field(rec["image_name"], where, "image_name")
            meta = {
                "qid": rec["qid"],
                "organ": clean(rec.get("image_organ"), where, "image_organ"),
                "question_type": clean(rec.get("question_type"), where, "question_type"),
                "phrase_type": clean(rec.get("phrase_type"), where, "phrase_type"),
                "modality": None,
                "language": "en",
            }
            samples.append(Sample(
                id=f"vqa-rad-{qid}",
                task="vqa",
                images=[str(source / "images" / image_name)],
                question=text_field(rec["question"], where, "question"),
                answer=answer,
                answer_type=answer_type,
                meta={k: v for k, v in meta.items() if v is not None},
            ))
        splits[split] = samples
    notes = {"dropped_frame_rows": dropped_frame} if options.drop_frame else {}
    return SourceSplits(splits=splits, notes=notes, root=source)
