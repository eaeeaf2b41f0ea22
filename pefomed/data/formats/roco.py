"""`roco`: ROCO (Pelka et al., 2018) image-caption pairs for stage-1 alignment.

Layout: data/{train,validation,test}/{radiology,non-radiology}/captions.txt with lines
`ROCO_00001<TAB> caption` (note the space after the tab) and images/ROCO_00001.jpg beside each
captions.txt. Split rule: the train/validation/test folder in the path. Samples are task
"report" (answer = caption, no prompt). License: captions from PMC Open Access articles under
their own (mostly CC BY) licenses; check each image's source article before redistributing.
"""

from __future__ import annotations

from pathlib import Path

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import clean, split_of
from pefomed.errors import UserError
from pefomed.records import Sample


@register("roco")
def read_roco(source: Path, options: PrepareOptions) -> SourceSplits:
    files = [source] if source.is_file() else sorted(source.rglob("captions.txt"))
    if not files:
        raise UserError(f"{source}: no captions.txt found (roco expects data/<split>/radiology/captions.txt)")
    splits: dict[str, list[Sample]] = {}
    skipped: list[dict[str, str]] = []
    for path in files:
        parts = path.relative_to(source).parts if source.is_dir() else path.parts
        split = next((split_of(p) for p in reversed(parts[:-1]) if split_of(p)), None)
        if split is None:
            raise UserError(f"{path}: no train/validation/test folder in the path to tell its split")
        kind = path.parent.name
        image_dir = options.images or path.parent / "images"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise UserError(f"{path}: not UTF-8 text (byte {err.start})") from None
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise UserError(f"{path}:{lineno}: expected 'ROCO_ID<TAB>caption', found no tab")
            name, caption = line.split("\t", 1)
            name, caption = name.strip(), clean(caption)
            if not caption:
                if not options.skip_bad:
                    raise UserError(f"{path}:{lineno}: {name} has an empty caption", hint="pass `skip_bad` to skip it")
                skipped.append({"id": name, "split": split, "reason": f"empty caption ({path}:{lineno})"})
                continue
            splits.setdefault(split, []).append(Sample(
                id=name, task="report", images=[str(image_dir / f"{name}.jpg")], answer=caption,
                meta={"collection": kind, "language": "en"}))
    root = options.images or (source if source.is_dir() else source.parent)
    return SourceSplits(splits=splits, skipped=skipped, root=root, notes={"task": "caption (stage-1 alignment)"})
