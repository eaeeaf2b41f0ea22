"""`hf-parquet` and the presets `vqa-rad-hf`, `path-vqa-hf`, `slake-hf`: Hugging Face parquet shards.

Layout: *.parquet anywhere under SOURCE (usually data/), with columns `image` ({bytes, path}),
`question`, `answer`. Split rule: the shard name (train-*, validation-*/val-*, test-*).
The images are embedded as bytes: they are written to DATA_DIR/images/embedded/<sha256>.<ext>,
so identical images share one file. There is no answer type in these exports: yes/no answers
are inferred closed, the rest open, and manifest.json notes it.
Needs pyarrow (optional dependency group "hf").
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from pefomed.data.formats import EMBEDDED, PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import answer_text, clean, compact, infer_answer_type, split_of, text_field
from pefomed.errors import UserError
from pefomed.records import Sample

PRESETS = {
    # name: (id prefix, meta added to every sample, note)
    "hf-parquet": ("hf", {}, None),
    "vqa-rad-hf": ("vqa-rad-hf", {"language": "en"}, "VQA-RAD (CC0) Hugging Face export: 1,793 train / 451 test rows"),
    "path-vqa-hf": ("path-vqa-hf", {"language": "en", "modality": "pathology"},
                    "PathVQA Hugging Face export; images copyrighted by their publishers"),
    "slake-hf": ("slake-hf", {"language": "en"}, "SLAKE (CC BY 4.0) English Hugging Face export"),
}
MAGIC = [(b"\x89PNG", ".png"), (b"\xff\xd8", ".jpg"), (b"GIF8", ".gif"), (b"BM", ".bmp")]


def _suffix(data: bytes, path: str | None) -> str:
    if len(data) > 132 and data[128:132] == b"DICM":
        return ".dcm"
    for magic, suffix in MAGIC:
        if data.startswith(magic):
            return suffix
    # the suffix becomes part of a file name in DATA_DIR: only a short plain one is taken
    suffix = Path(path).suffix.lower() if isinstance(path, str) and "\x00" not in path else ""
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".bin"


def read_parquet(source: Path, options: PrepareOptions, preset: str) -> SourceSplits:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading parquet needs pyarrow, which is not installed",
                        hint="pip install 'pefomed[hf]' (or pip install pyarrow)") from None
    prefix, fixed_meta, note = PRESETS[preset]
    shards = [source] if source.is_file() else sorted(source.rglob("*.parquet"))
    if not shards:
        raise UserError(f"{source}: no .parquet files found")
    splits: dict[str, list[Sample]] = {}
    embedded: dict[str, bytes] = {}
    for shard in shards:
        split = split_of(shard.name)
        if split is None:
            raise UserError(f"{shard}: cannot tell the split from the file name (expected train-*, validation-* or test-*)")
        try:
            table = pq.read_table(shard)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError for damaged files
            raise UserError(f"{shard}: unreadable parquet ({err})") from None
        missing = [c for c in ("image", "question", "answer") if c not in table.column_names]
        if missing:
            raise UserError(f"{shard}: missing column(s) {', '.join(missing)} (has {', '.join(table.column_names)})")
        rel = shard.relative_to(source) if source.is_dir() else Path(shard.name)
        for index, row in enumerate(table.to_pylist()):
            where = f"{shard}: row {index}"
            image = row["image"]
            data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, bytes) else None
            if not isinstance(data, bytes) or not data:
                raise UserError(f"{where}: the image column holds no bytes")
            name = f"embedded/{hashlib.sha256(data).hexdigest()}{_suffix(data, image.get('path') if isinstance(image, dict) else None)}"
            embedded[name] = data
            answer = answer_text(row["answer"], where)
            meta = {**fixed_meta, "shard": str(rel), "row": index}
            for key in ("answer_type", "modality", "organ", "question_type", "language"):
                if clean(row.get(key), where, key) is not None:
                    meta[key] = clean(row[key], where, key)
            # an export that does carry an answer type is trusted over the yes/no rule
            given = (clean(row.get("answer_type"), where, "answer_type") or "").lower()
            answer_type = given if given in ("closed", "open") else infer_answer_type(answer)
            meta.pop("answer_type", None)
            splits.setdefault(split, []).append(Sample(
                id=f"{prefix}-{rel.stem}-{index}",
                task="vqa",
                images=[EMBEDDED + name],
                question=text_field(row["question"], where, "question"),
                answer=answer,
                answer_type=answer_type,
                meta=compact(meta),
            ))
    notes = {"answer_type": "inferred: yes/no answers closed, all others open (no answer type in the source)",
             "images": "embedded bytes written as images/embedded/<sha256>.<ext>"}
    if note:
        notes["preset"] = note
    return SourceSplits(splits=splits, notes=notes, embedded=embedded,
                        root=source if source.is_dir() else source.parent)


for _name in PRESETS:
    register(_name)(functools.partial(read_parquet, preset=_name))
