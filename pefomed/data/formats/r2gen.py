"""`r2gen`: IU X-ray and MIMIC-CXR as R2Gen (Chen et al., EMNLP 2020) distributes them.

Layout: annotation.json = {"train": [...], "val": [...], "test": [...]}, records
{id, report, image_path: [...], split} (MIMIC-CXR adds study_id and subject_id), images under an
image root: `--images`, else SOURCE/images, else the folder of annotation.json. Split rule: the
key the record sits under. A multi-view study is one sample holding all its images (task
"report", answer = report text, no prompt); `--per-image` emits one sample per image instead.
Licenses: IU X-ray CC BY-NC-ND; MIMIC-CXR needs credentialed PhysioNet access (never redistribute).
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import SPLIT_WORDS, clean, compact, id_field, need_keys, need_list, text_field
from pefomed.errors import UserError
from pefomed.io import short
from pefomed.io import read_json
from pefomed.records import Sample


@register("r2gen")
def read_r2gen(source: Path, options: PrepareOptions) -> SourceSplits:
    path = source / "annotation.json" if source.is_dir() else source
    if not path.is_file():
        raise UserError(f"{source}: annotation.json not found (r2gen expects annotation.json and an image folder)")
    folder = path.parent
    root = options.images or (folder / "images" if (folder / "images").is_dir() else folder)
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected an object {{\"train\": [...], \"val\": [...], \"test\": [...]}}")
    unknown = [k for k in data if k not in SPLIT_WORDS]
    if unknown:
        raise UserError(f"{path}: unknown split key(s) {', '.join(short(k, 40) for k in unknown[:5])}")
    splits: dict[str, list[Sample]] = {}
    skipped: list[dict[str, str]] = []
    for key, records in data.items():
        split = SPLIT_WORDS[key]
        for index, rec in enumerate(need_list(records, path, f"a list under {key!r}")):
            where = f"{path}: {key}[{index}]"
            need_keys(rec, ("id", "report", "image_path"), where)
            rec_id = id_field(rec["id"], where)
            where = f"{where} (id {rec_id})"
            paths = rec["image_path"]
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
                raise UserError(f"{where}: image_path must be a non-empty list of paths")
            report = clean(text_field(rec["report"], where, "report"), where, "report")
            if report is None:
                if not options.skip_bad:
                    raise UserError(f"{where}: empty report", hint="pass `skip_bad` to skip such studies")
                skipped.append({"id": rec_id, "split": split, "reason": "empty report"})
                continue
            meta = compact({"study_id": rec.get("study_id"), "subject_id": rec.get("subject_id"),
                            "study": rec_id, "views": len(paths)})
            if options.per_image:
                for view, image in enumerate(paths):
                    splits.setdefault(split, []).append(Sample(
                        id=f"{rec_id}-{view}", task="report", images=[str(root / image)], answer=report,
                        meta={**meta, "view": view}))
            else:
                splits.setdefault(split, []).append(Sample(
                    id=rec_id, task="report", images=[str(root / p) for p in paths], answer=report, meta=meta))
    return SourceSplits(splits=splits, root=root, skipped=skipped,
                        notes={"unit": "image" if options.per_image else "study"})
