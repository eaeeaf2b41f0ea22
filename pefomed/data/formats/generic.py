"""Generic layouts: `jsonl`, `csv` (columns chosen with --map) and `folder` (images + .txt reports).

`jsonl` / `csv`: SOURCE is one file, or a folder of train / val|validation / test files.
`--map field=column,...` names the columns; fields: question, answer, image (several paths
separated by ";" or a JSON list), id, split, answer_type, prompt, task; any other field name
becomes a meta key. Unmapped fields default to the column of the same name. task is "vqa" when a
question column exists, else "report". Split rule: the mapped split column, else the file name,
else a seeded split by image (`--split`, `--seed`). Image paths are relative to `--images`, else
to the file's folder. An image may be a NIfTI volume (.nii, .nii.gz): prepare copies it as it is
and the sample shows `--series-frames` of its axial slices (pefomed.data.volumes.VOLUME_RULE).

`folder`: every image file (jpg, png, dcm) or NIfTI volume (.nii, .nii.gz) under SOURCE with a sidecar NAME.txt holding its
report; task "report". Split rule: a train/val/test folder in the path, else a seeded split.
An image without a sidecar is an error naming it (skipped and listed with --skip-bad).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from pefomed.data.formats import PrepareOptions, SourceSplits, register
from pefomed.data.formats._common import (answer_text, answer_type_of, clean, compact, id_field, image_list, image_root,
                                          infer_answer_type, parse_fractions, read_csv_rows, seeded_split, split_of,
                                          text_field)
from pefomed.data.images import IMAGE_SUFFIXES
from pefomed.data.volumes import is_volume
from pefomed.errors import UserError
from pefomed.io import iter_jsonl, short
from pefomed.records import SPLITS, Sample

FIELDS = ("question", "answer", "image", "id", "split", "answer_type", "prompt", "task")


def _finish(by_split: dict[str | None, list[Sample]], options: PrepareOptions, notes: dict) -> dict[str, list[Sample]]:
    splits = {k: v for k, v in by_split.items() if k}
    if by_split.get(None):
        fractions = parse_fractions(options.split)
        groups: dict[str, list[Sample]] = {}
        for s in by_split[None]:
            groups.setdefault(s.images[0] if s.images else s.id, []).append(s)
        for split, samples in seeded_split(groups, fractions, options.seed).items():
            splits.setdefault(split, []).extend(samples)
        notes["split"] = {"rule": "seeded, by image", "fractions": list(fractions), "seed": options.seed}
    return splits


def _images(value, where: str, key: str) -> list[str]:
    if isinstance(value, list):
        return image_list(value, where, key)
    text = clean(value, where, key)
    if text is None:
        raise UserError(f"{where}: no image path")
    if text.startswith("["):
        try:
            return image_list(json.loads(text), where, key)
        except (json.JSONDecodeError, RecursionError):
            raise UserError(f"{where}: image column looks like a JSON list but is not valid JSON") from None
    paths = [p.strip() for p in text.split(";") if p.strip()]
    if not paths:
        raise UserError(f"{where}: no image path")
    return paths


def _read_table(source: Path, options: PrepareOptions, kind: str,
                rows_of: "callable[[Path], Iterator[tuple[int, dict]]]", suffixes: tuple[str, ...]) -> SourceSplits:
    files = [source] if source.is_file() else sorted(p for p in source.iterdir()
                                                     if p.suffix.lower() in suffixes and split_of(p.name))
    if not files:
        raise UserError(f"{source}: no {kind} file (a file, or a folder with train/val/test {'/'.join(suffixes)} files)")
    unknown_keys = [k for k in options.column_map if not k.isidentifier()]
    if unknown_keys:
        raise UserError(f"`map`: field names must be plain words, got {', '.join(unknown_keys)}")
    col = {f: options.column_map.get(f, f) for f in FIELDS}
    extra = {k: v for k, v in options.column_map.items() if k not in FIELDS}
    root = image_root(source, options.images)
    by_split: dict[str | None, list[Sample]] = {}
    notes: dict[str, object] = {"column_map": col | extra}
    inferred = 0
    for path in files:
        file_split = split_of(path.name) if source.is_dir() or split_of(path.name) else None
        rows = list(rows_of(path))
        # The file is VQA when any row has the question field (a CSV: the header). A row that
        # lacks it is then an error, never silently a report sample.
        vqa_file = "question" in options.column_map or any(col["question"] in row for _, row in rows)
        for line, row in rows:
            where = f"{path}:{line}"
            for need in ("answer", "image"):
                if col[need] not in row:
                    raise UserError(f"{where}: no column {col[need]!r} for {need} (use `map` {need}=COLUMN)")
            task = clean(row.get(col["task"]), where, col["task"]) or ("vqa" if vqa_file else "report")
            if task not in ("vqa", "report"):
                raise UserError(f"{where}: task {short(task, 40)} must be vqa or report")
            question = None
            if task == "vqa":
                if col["question"] not in row:
                    raise UserError(f"{where}: a vqa row without the {col['question']!r} field"
                                    + (" (other rows of the file have it)" if vqa_file else ""),
                                    hint="add the question, or map its column with `map` question=COLUMN")
                question = text_field(row[col["question"]], where, col["question"])
            answer = answer_text(row[col["answer"]], where)
            given_id = clean(row.get(col["id"]), where, col["id"])
            sample_id = id_field(given_id, where, col["id"]) if given_id is not None else f"{path.stem}-{line}"
            split = file_split
            if col["split"] in row:
                split = split_of(clean(row[col["split"]], where, col["split"]) or "")
                if split is None:
                    raise UserError(f"{where}: split {short(row[col['split']], 40)} is none of {', '.join(SPLITS)}")
            answer_type = None
            if task == "vqa":
                if clean(row.get(col["answer_type"]), where, col["answer_type"]):
                    answer_type = answer_type_of(row[col["answer_type"]], where)
                else:
                    answer_type, inferred = infer_answer_type(answer), inferred + 1
            by_split.setdefault(split, []).append(Sample(
                id=sample_id, task=task, images=[str(root / p) for p in _images(row[col["image"]], where, col["image"])],
                question=question,
                prompt=clean(row.get(col["prompt"]), where, col["prompt"]) if task == "report" else None,
                answer=answer, answer_type=answer_type,
                meta=compact({k: row.get(v) for k, v in extra.items()})))
    if inferred:
        notes["answer_type"] = f"inferred for {inferred} samples: yes/no answers closed, all others open"
    return SourceSplits(splits=_finish(by_split, options, notes), root=root, notes=notes)


@register("jsonl")
def read_jsonl(source: Path, options: PrepareOptions) -> SourceSplits:
    return _read_table(source, options, "JSONL", iter_jsonl, (".jsonl",))


@register("csv")
def read_csv(source: Path, options: PrepareOptions) -> SourceSplits:
    return _read_table(source, options, "CSV", read_csv_rows, (".csv",))


def _without_image_suffix(path: Path) -> Path:
    """x.png -> x, ct.nii.gz -> ct (a volume's two suffixes are one)."""
    if str(path).lower().endswith(".nii.gz"):
        return path.with_name(path.name[: -len(".nii.gz")])
    return path.with_suffix("")


@register("folder")
def read_folder(source: Path, options: PrepareOptions) -> SourceSplits:
    if not source.is_dir():
        raise UserError(f"{source}: not a folder (folder expects images with sidecar .txt reports)")
    named = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES or is_volume(p))
    files = [p for p in named if p.is_file()]
    # an image name that is a link to nothing (dangling, or a loop: is_file() is False for both)
    # is a sample the user meant to include: listed as skipped, or refused, never dropped unseen
    # (and a link to a folder or a device: an image name that is not a readable file is listed too)
    broken = [p for p in named if p.is_symlink() and not p.is_file()]
    if not files and not broken:
        raise UserError(f"{source}: no images (.jpg, .jpeg, .png, .dcm, .nii, .nii.gz) found")
    by_split: dict[str | None, list[Sample]] = {}
    skipped: list[dict[str, str]] = []
    problems = []
    for link in broken:
        sample_id = _without_image_suffix(link.relative_to(source)).as_posix()
        what = "a missing file or a link loop" if not link.exists() else "something that is not a file"
        reason = f"symbolic link to {what} ({link} -> {short(os.readlink(link), 80)})"
        problems.append(f"{sample_id}: {reason}")
        skipped.append({"id": sample_id, "reason": reason})
    for image in files:
        rel = image.relative_to(source)
        # ct.nii.gz's report is ct.txt, as x.png's is x.txt
        sidecar = _without_image_suffix(image).with_name(_without_image_suffix(image).name + ".txt")
        sample_id = _without_image_suffix(rel).as_posix()
        report = None
        if sidecar.is_file():
            try:
                report = clean(sidecar.read_text(encoding="utf-8"))
            except UnicodeDecodeError as err:
                raise UserError(f"{sidecar}: not UTF-8 text (byte {err.start})") from None
            except OSError as err:
                raise UserError(f"{sidecar}: cannot read ({err.strerror or err})") from None
        if not report:
            reason = f"{'empty' if sidecar.is_file() else 'no'} sidecar report {sidecar.name}"
            problems.append(f"{sample_id}: {reason} for {image}")
            skipped.append({"id": sample_id, "reason": f"{reason} ({image})"})
            continue
        split = next((split_of(p) for p in rel.parts[:-1] if split_of(p)), None)
        by_split.setdefault(split, []).append(Sample(id=sample_id, task="report", images=[str(image)], answer=report))
    if problems and not options.skip_bad:
        raise UserError(f"{len(problems)} image(s) without a report or a readable file:\n  " + "\n  ".join(problems[:20]),
                        hint="add NAME.txt beside each image, fix the links, or pass `skip_bad` to skip them")
    notes: dict[str, object] = {}
    return SourceSplits(splits=_finish(by_split, options, notes), root=source, skipped=skipped, notes=notes)
