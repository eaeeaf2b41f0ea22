"""What to answer: a prepared split (with references), or images from a folder (walked with its
sub-folders) or a single image file."""

from __future__ import annotations

import os
from pathlib import Path

from pefomed.console import console
from pefomed.data.images import IMAGE_SUFFIXES, is_dicom
from pefomed.data.volumes import is_volume
from pefomed.errors import UserError
from pefomed.options import flag_of
from pefomed.records import Sample, read_split


def split_samples(data_dir: str | Path, split: str) -> tuple[list[Sample], Path]:
    return read_split(data_dir, split), Path(data_dir)


def _walk(folder: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under `folder`, sub-folders included, sorted by relative path.
    Symlinked folders are not followed (a link cannot make the walk loop or leave the folder)."""
    images, others = [], []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            kept = path.suffix.lower() in IMAGE_SUFFIXES or is_volume(path) or is_dicom(path)
            (images if kept else others).append(path)
    key = lambda p: p.relative_to(folder).as_posix()  # noqa: E731
    return sorted(images, key=key), sorted(others, key=key)


def folder_samples(source: str | Path, question: str | None, series_frames: int = 1) -> tuple[list[Sample], Path]:
    """One sample per image file, or per DICOM series (pefomed.data.images.SERIES_RULE: the
    folder's single-frame slices of one SeriesInstanceUID, shown as `series_frames` evenly spaced
    slices, 1: the middle one). Ids are paths relative to the folder, so two `image1.png` in
    different studies never collide; a series' id is its folder's path and its SeriesInstanceUID
    (`study1/ct/1.2.840...`). Each NIfTI volume (.nii, .nii.gz) is one sample too, its id its path,
    shown as `series_frames` evenly spaced axial slices the same way (pefomed.data.volumes.VOLUME_RULE;
    its images are `PATH#K`, slice K). Samples come in id order. Without a question each is a
    report-generation request. `source` may also be one image file (never a series)."""
    from pefomed.data.images import dicom_series, series_frames as frames_of
    from pefomed.data.volumes import slice_refs, volume_slices

    source = Path(source)
    if source.is_file():
        root, images, others = source.parent, [source], []
    elif source.is_dir():
        root = source
        images, others = _walk(source)
    else:
        raise UserError(f"`images` {source}: no such folder or image file")
    if not images:
        raise UserError(f"`images` {source}: no images (.jpg, .jpeg, .png, .dcm, .nii, .nii.gz) found"
                        + (f" among its {len(others)} files" if others else ""))
    if others:
        shown = ", ".join(p.relative_to(root).as_posix() for p in others[:3])
        console.print(f"{flag_of('infer', 'images')}: {len(images)} images; {len(others)} other files ignored (e.g. {shown})",
                      highlight=False, markup=False)
    series, singles = dicom_series(images) if source.is_dir() else ([], images)
    task = "vqa" if question else "report"
    samples = []
    volumes = 0
    for path in singles:
        rel = path.relative_to(root).as_posix()
        chosen = [rel]
        if is_volume(path):
            volumes += 1
            try:
                n_slices = volume_slices(path)
            except UserError:
                n_slices = None  # a damaged volume: its loader names the problem (or --skip-bad lists it)
            if n_slices is not None:
                if n_slices < series_frames:
                    raise UserError(f"`series_frames` {series_frames}: volume {rel} has only {n_slices} axial slices",
                                    hint=f"use `series_frames` {n_slices} or fewer")
                chosen = slice_refs(rel, n_slices, series_frames)
        samples.append(Sample(id=rel, task=task, images=chosen, answer="", question=question))
    for uid, slices in series:
        folder = slices[0].parent.relative_to(root).as_posix()
        sample_id = uid if folder == "." else f"{folder}/{uid}"
        if len(slices) < series_frames:
            raise UserError(f"`series_frames` {series_frames}: series {sample_id} has only {len(slices)} slices",
                            hint=f"use `series_frames` {len(slices)} or fewer")
        chosen = [slices[i].relative_to(root).as_posix() for i in frames_of(len(slices), series_frames)]
        samples.append(Sample(id=sample_id, task=task, images=chosen, answer="", question=question))
    samples.sort(key=lambda s: s.id)
    ids = [s.id for s in samples]
    for a, b in zip(ids, ids[1:]):
        if a == b:  # a file named exactly as a series' UID beside it
            raise UserError(f"`images` {source}: two samples would have the id {a!r} (a file named like the "
                            f"SeriesInstanceUID of the slices beside it); rename the file")
    if volumes:
        console.print(f"{flag_of('infer', 'images')}: {volumes} NIfTI volume(s), each answered as one sample of {series_frames} axial "
                      f"slice(s)", highlight=False, markup=False)
    if series:
        console.print(f"{flag_of('infer', 'images')}: {len(series)} DICOM series ({sum(len(sl) for _, sl in series)} slices), each "
                      f"answered as one sample of {series_frames} slice(s)", highlight=False, markup=False)
    elif series_frames > 1 and not volumes:
        console.print(f"{flag_of('infer', 'series_frames')} {series_frames}: no DICOM series found (single-frame slices sharing a "
                      f"SeriesInstanceUID and a folder); every image is answered alone", highlight=False, markup=False)
    return samples, root


def drop_unreadable(samples: list[Sample], root: Path, num_workers: int = 0) -> tuple[list[Sample], list[dict]]:
    """--skip-bad: the samples whose every image opens (decoded once here, or in `num_workers`
    worker processes, within the pixel limit), and for each other one its id and why it was skipped."""
    from pefomed.infer.batches import image_failures

    kept, skipped = [], []
    for sample, reason in zip(samples, image_failures(samples, root, num_workers)):
        if reason is not None:
            skipped.append({"id": sample.id, "reason": reason})
        else:
            kept.append(sample)
    return kept, skipped


# --questions FILE: column names (CSV header, JSONL keys) and the ones a row must have
QUESTION_COLUMNS = ("image", "question", "id", "reference")
_NEEDED = ("image", "question")


def _question_rows(path: Path):
    """(line number, {column: value}) of a CSV (with a header) or JSONL questions file."""
    import csv

    from pefomed.data.formats._common import check_csv_header, csv_error
    from pefomed.io import iter_jsonl

    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from iter_jsonl(path)
        return
    if suffix != ".csv":
        raise UserError(f"`questions` {path}: expected a .csv or .jsonl file (columns {', '.join(QUESTION_COLUMNS)})")
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as err:
        raise UserError(f"`questions` {path}: cannot read ({err.strerror or err})") from None
    with handle:
        try:
            # strict: an unterminated quote is an error, not one field that swallows the rest of the file
            reader = csv.DictReader(handle, strict=True)
            header = reader.fieldnames or []
            check_csv_header(path, header)
            missing = [c for c in _NEEDED if c not in header]
            if missing:
                raise UserError(f"{path}:1: the header has no {' or '.join(repr(c) for c in missing)} column "
                                f"(found {', '.join(map(repr, header)) or 'nothing'}; columns: "
                                f"{', '.join(QUESTION_COLUMNS)}, the last two optional)")
            for row in reader:
                # reader.line_num: the line the row ends on (a quoted field may span lines)
                if None in row:
                    raise UserError(f"{path}:{reader.line_num}: more fields than the header's {len(header)}")
                if not any((value or "").strip() for value in row.values()):
                    continue  # a blank line
                yield reader.line_num, {k: v for k, v in row.items() if v is not None and v != ""}
        except UnicodeDecodeError as err:
            raise UserError(f"`questions` {path}: not UTF-8 text (byte {err.start})") from None
        except csv.Error as err:
            raise csv_error(path, reader, err) from None


def questions_samples(questions: str | Path, folder: str | Path) -> tuple[list[Sample], Path, bool]:
    """--questions FILE with --images FOLDER: one VQA sample per row, in the file's order. Image
    paths are relative to FOLDER (and may not leave it); ids default to "PATH#N", the N-th
    question of that image; a `reference` column (on every row, or on none) is written as the
    reference that `pefomed score` reads. Returns (samples, FOLDER, whether references were given)."""
    from pefomed.records import resolve_image, split_slice_ref

    questions, root = Path(questions), Path(folder)
    if not questions.is_file():
        raise UserError(f"`questions` {questions}: no such file")
    if not root.is_dir():
        raise UserError(f"`images` {root}: `questions` needs the folder its image paths are relative to")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    per_image: dict[str, int] = {}
    with_reference: tuple[int, bool] | None = None
    for line, row in _question_rows(questions):
        where = f"{questions}:{line}"
        unknown = sorted(set(row) - set(QUESTION_COLUMNS))
        if unknown:
            raise UserError(f"{where}: unknown column {unknown[0]!r} (columns: {', '.join(QUESTION_COLUMNS)})")
        for key in QUESTION_COLUMNS:
            if key in row and not isinstance(row[key], str):
                raise UserError(f"{where}: {key!r} must be text, got {type(row[key]).__name__}")
        for key in _NEEDED:
            if not row.get(key, "").strip():
                raise UserError(f"{where}: no {key!r}" + (" (an image path relative to the `images` folder)"
                                                            if key == "image" else ""))
        rel = Path(row["image"].strip()).as_posix()
        try:
            path = resolve_image(root, rel, row.get("id") or rel)
        except UserError as err:
            raise UserError(f"{where}: {err}".replace("DATA_DIR", "`images` folder")) from None
        if not Path(split_slice_ref(str(path))[0]).is_file():  # a volume's slice `vol.nii.gz#40`: its file
            raise UserError(f"{where}: image {rel} not found in {root}")
        per_image[rel] = per_image.get(rel, 0) + 1
        sample_id = row.get("id", "").strip() or f"{rel}#{per_image[rel]}"
        if sample_id in seen:
            raise UserError(f"{where}: id {sample_id!r} already used on line {seen[sample_id]}")
        seen[sample_id] = line
        has_reference = "reference" in row
        if has_reference and not row["reference"].strip():
            raise UserError(f"{where}: the reference is empty (leave the column out of every row for none)")
        if with_reference is None:
            with_reference = (line, has_reference)
        elif with_reference[1] != has_reference:
            first = with_reference[0]
            raise UserError(f"{where}: " + ("a reference, but line {} has none".format(first) if has_reference
                                            else "no reference, but line {} has one".format(first))
                            + " (give every row a reference, or none)")
        samples.append(Sample(id=sample_id, task="vqa", images=[rel], question=row["question"].strip(),
                              answer=row.get("reference", "").strip() if has_reference else ""))
    if not samples:
        raise UserError(f"`questions` {questions}: no questions")
    return samples, root, bool(with_reference and with_reference[1])
