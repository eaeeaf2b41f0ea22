"""`slake`: SLAKE 1.0 (Liu et al., ISBI 2021; CC BY 4.0) as released and as on Hugging Face.

Layout: train.json, validate.json (original) or validation.json (Hugging Face), test.json, and
imgs/xmlabN/source.jpg. Each JSON file is one line holding a list; key order varies between
records. Split rule: the file. `--language en|zh|all` (default en) filters first: the same image
has English questions in one split and Chinese ones in another, so leakage is only meaningful
after the language filter (prepare reports it on what is kept).
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import (answer_text, answer_type_of, clean, compact, id_field, need_keys, need_list,
                                          text_field)
from pefomed.errors import UserError
from pefomed.io import read_json
from pefomed.records import Sample

FILES = {"train": ("train.json",), "val": ("validate.json", "validation.json"), "test": ("test.json",)}
REQUIRED = ("qid", "img_name", "question", "answer", "q_lang", "answer_type")
LANGUAGES = ("en", "zh", "all")


@register("slake")
def read_slake(source: Path, options: PrepareOptions) -> SourceSplits:
    if options.language not in LANGUAGES:
        raise UserError(f"`language` must be one of {', '.join(LANGUAGES)}, got {options.language!r}")
    if not source.is_dir():
        raise UserError(f"{source}: not a folder (slake expects train.json, validate.json, test.json and imgs/)")
    image_dir = options.images or source / "imgs"
    splits: dict[str, list[Sample]] = {}
    other_language = 0
    for split, names in FILES.items():
        found = [source / n for n in names if (source / n).is_file()]
        if not found:
            if split == "train":
                raise UserError(f"{source}: not a SLAKE folder, train.json not found")
            continue
        if len(found) > 1:
            raise UserError(f"{source}: both {found[0].name} and {found[1].name} present; keep one")
        path = found[0]
        samples = []
        for index, rec in enumerate(need_list(read_json(path), path)):
            where = f"{path}: record {index}"
            need_keys(rec, REQUIRED, where)
            qid = id_field(rec["qid"], where, "qid")
            where = f"{where} (qid {qid})"
            lang = text_field(rec["q_lang"], where, "q_lang").lower()
            if options.language != "all" and lang != options.language:
                other_language += 1
                continue
            meta = {
                "qid": rec["qid"],
                "img_id": rec.get("img_id"),
                "organ": clean(rec.get("location"), where, "location"),
                "modality": clean(rec.get("modality"), where, "modality"),
                "question_type": clean(rec.get("content_type"), where, "content_type"),
                "base_type": clean(rec.get("base_type"), where, "base_type"),
                "triple": rec.get("triple") if rec.get("base_type") == "kvqa" else None,
                "language": lang,
            }
            samples.append(Sample(
                id=f"slake-{qid}",
                task="vqa",
                images=[str(image_dir / text_field(rec["img_name"], where, "img_name"))],
                question=text_field(rec["question"], where, "question"),
                answer=answer_text(rec["answer"], where),
                answer_type=answer_type_of(rec["answer_type"], where),
                meta=compact(meta),
            ))
        splits[split] = samples
    notes = {"language": options.language, "other_language_rows_dropped": other_language}
    return SourceSplits(splits=splits, notes=notes, root=image_dir)
