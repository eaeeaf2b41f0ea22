"""`captions`: generic image-caption JSON lists [{"image": ..., "caption": ...}, ...].

Layout: one JSON file (split seeded by image with `--split`/`--seed`), or a folder of
train.json / val.json (or validation.json) / test.json (split = file name). Image paths are
relative to `--images`, else to the JSON file's folder. Samples are task "report" (answer =
caption) for stage-1 alignment training.
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import (clean, image_list, image_root, json_files, need_keys, need_list, parse_fractions,
                                          seeded_split, split_of, text_field)
from pefomed.errors import UserError
from pefomed.io import read_json
from pefomed.records import Sample


@register("captions")
def read_captions(source: Path, options: PrepareOptions) -> SourceSplits:
    files = json_files(source, "caption")
    root = image_root(source, options.images)
    by_split: dict[str | None, list[Sample]] = {}
    skipped: list[dict[str, str]] = []
    for path in files:
        split = split_of(path.name)
        for index, rec in enumerate(need_list(read_json(path), path)):
            where = f"{path}: record {index}"
            need_keys(rec, ("image", "caption"), where)
            sample_id = f"{path.stem}-{index}"
            caption = clean(text_field(rec["caption"], where, "caption"), where, "caption")
            if not caption:
                if not options.skip_bad:
                    raise UserError(f"{where}: empty caption", hint="pass `skip_bad` to skip it")
                skipped.append({"id": sample_id, "reason": f"empty caption ({where})"})
                continue
            images = image_list(rec["image"], where, "image")
            by_split.setdefault(split, []).append(Sample(
                id=sample_id, task="report", images=[str(root / str(p)) for p in images], answer=caption,
                meta={"source_file": path.name}))
    notes: dict[str, object] = {"task": "caption (stage-1 alignment)"}
    if None in by_split:
        fractions = parse_fractions(options.split)
        groups: dict[str, list[Sample]] = {}
        for s in by_split[None]:
            groups.setdefault(s.images[0], []).append(s)  # the same image never crosses splits
        splits = seeded_split(groups, fractions, options.seed)
        notes["split"] = {"rule": "seeded, by image path", "fractions": list(fractions), "seed": options.seed}
    else:
        splits = {k: v for k, v in by_split.items() if k}
    return SourceSplits(splits=splits, skipped=skipped, root=root, notes=notes)
