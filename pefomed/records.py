"""The records every stage passes on: a prepared sample and a prediction.

These are the row formats of `DATA_DIR/{train,val,test}.jsonl` and `PRED.jsonl`
(docs/formats.md). Readers validate each row and name the file and line of the first bad one.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pefomed.errors import UserError
from pefomed.io import clip, iter_jsonl, iter_jsonl_lines, read_json, sha256_file, short, write_json, write_jsonl
from pefomed.options import command_line

TASKS = ("vqa", "report")
ANSWER_TYPES = ("closed", "open")
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    """One prepared example. `images` are paths relative to the DATA_DIR holding the split."""

    id: str
    task: str
    images: list[str]
    answer: str
    question: str | None = None  # VQA
    prompt: str | None = None  # report generation: the instruction, when the source has one
    answer_type: str | None = None  # "closed" | "open", VQA only
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        return {k: v for k, v in row.items() if v is not None}

    @property
    def text_input(self) -> str:
        """What the model is asked: the question for VQA, the prompt (maybe empty) for reports."""
        return (self.question if self.task == "vqa" else self.prompt) or ""

    @classmethod
    def from_dict(cls, row: dict[str, Any], where: str) -> "Sample":
        def need(key: str, kind: type):
            if key not in row:
                raise UserError(f"{where}: missing field '{key}'")
            if not isinstance(row[key], kind):
                raise UserError(f"{where}: field '{key}' must be {kind.__name__}, got {type(row[key]).__name__}")
            return row[key]

        sample_id = need("id", str)
        task = need("task", str)
        if task not in TASKS:
            raise UserError(f"{where}: id {clip(sample_id)}: task must be one of {TASKS}, got {short(task)}")
        if not sample_id:
            raise UserError(f"{where}: field 'id' is empty")
        sid = clip(sample_id)
        images = need("images", list)
        if not all(isinstance(p, str) for p in images):
            raise UserError(f"{where}: id {sid}: 'images' must be a list of paths")
        for p in images:
            _check_image_path(p, f"{where}: id {sid}")
        answer = need("answer", str)
        question = row.get("question")
        if task == "vqa" and not isinstance(question, str):
            raise UserError(f"{where}: id {sid}: a vqa sample needs a 'question' string")
        if question is not None and not isinstance(question, str):
            raise UserError(f"{where}: id {sid}: 'question' must be a string, got {type(question).__name__}")
        if row.get("prompt") is not None and not isinstance(row["prompt"], str):
            raise UserError(f"{where}: id {sid}: 'prompt' must be a string, got {type(row['prompt']).__name__}")
        answer_type = row.get("answer_type")
        if answer_type is not None and answer_type not in ANSWER_TYPES:
            raise UserError(f"{where}: id {sid}: answer_type must be one of {ANSWER_TYPES}, got {short(answer_type)}")
        meta = row.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserError(f"{where}: id {sid}: 'meta' must be an object")
        return cls(id=sample_id, task=task, images=images, answer=answer, question=question,
                   prompt=row.get("prompt"), answer_type=answer_type, meta=meta)


@dataclass
class Prediction:
    """One row of PRED.jsonl, written by infer and read back by score (one schema for both).
    `reference`, `answer_type`, `task`, `meta` are set when known; `references` holds extra
    references when a file carries several; `predictions` holds every returned answer, best
    first (infer.num_return_sequences above 1; `prediction` is its first, the one scored);
    `shown_images` the images the model was shown instead of `images` under an image ablation
    (pefomed.data.image_ablation); `line` is where score read the row (never written)."""

    id: str
    prediction: str
    images: list[str] = field(default_factory=list)
    question: str = ""
    reference: str | None = None
    answer_type: str | None = None
    task: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    references: list[str] | None = None
    predictions: list[str] | None = None
    shown_images: list[str] | None = None
    line: int = field(default=0, compare=False)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("line")
        return {k: v for k, v in row.items() if v is not None}


# A split name becomes a file name inside DATA_DIR: a plain word, never a path.
_SPLIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MANIFEST = "manifest.json"


def check_split_name(split: Any, what: str = "split") -> str:
    """'train', 'val', 'test-hard': yes. '../x', 'a/b', '', '.hidden': a UserError naming it."""
    if not isinstance(split, str) or not _SPLIT_NAME.fullmatch(split):
        raise UserError(f"{what} {short(split)} is not a plain split name (letters, digits, '-' and '_'; "
                        "no path separators or '..')")
    return split


def _check_image_path(rel: str, where: str) -> None:
    """Lexical checks on an image path read from a DATA_DIR: relative, inside, no NUL."""
    if not rel or "\x00" in rel:
        raise UserError(f"{where}: image path {short(rel)} is empty or holds a NUL byte")
    parts = Path(rel).parts
    if Path(rel).is_absolute() or rel.startswith(("/", "\\")) or ".." in parts or ".." in rel.split("\\"):
        raise UserError(f"{where}: image path {short(rel)} must be relative to the DATA_DIR and stay inside it "
                        "(no absolute path, no '..')")


# An image path may name one axial slice of a NIfTI volume: `ct/vol.nii.gz#40` is slice 40 of
# ct/vol.nii.gz (pefomed.data.volumes.VOLUME_RULE). The suffix cannot be part of a real image file's
# name that pefomed reads: no image file name ends in ".nii#40" or ".nii.gz#40".
_SLICE_REF = re.compile(r"(?P<file>.+\.nii(?:\.gz)?)#(?P<index>[0-9]{1,7})", re.IGNORECASE | re.DOTALL)


def split_slice_ref(ref: str) -> tuple[str, int | None]:
    """("ct/vol.nii.gz", 40) for "ct/vol.nii.gz#40"; (ref, None) for any other image path."""
    match = _SLICE_REF.fullmatch(ref)
    return (match["file"], int(match["index"])) if match else (ref, None)


def resolve_image(data_dir: str | os.PathLike, rel: str, sample_id: str) -> Path:
    """The file behind an image path of a DATA_DIR sample, refusing anything outside DATA_DIR.

    An absolute path, a '..' and a symbolic link that resolves outside the DATA_DIR are each a
    UserError naming the sample: a split file is data, and data must not choose which files of
    the machine the model (and its logs) get to see. A volume's slice (`vol.nii.gz#40`) resolves
    its file and keeps the slice: `/data/images/vol.nii.gz#40`, which load_image reads.
    """
    where = f"sample {clip(sample_id)}"
    if not isinstance(rel, str):
        raise UserError(f"{where}: image path must be a string, got {type(rel).__name__}")
    _check_image_path(rel, where)
    file, index = split_slice_ref(rel)
    root = Path(data_dir).resolve()
    try:
        resolved = (root / file).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a name too long
        raise UserError(f"{where}: image path {short(rel)} cannot be resolved ({err})") from None
    if not resolved.is_relative_to(root):
        raise UserError(f"{where}: image path {short(rel)} resolves to {short(str(resolved))}, outside the DATA_DIR "
                        f"{root} (a symbolic link?)")
    return resolved if index is None else Path(f"{resolved}#{index}")


def read_manifest(data_dir: str | os.PathLike) -> dict[str, Any]:
    data_dir = Path(data_dir)
    path = data_dir / MANIFEST
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such DATA_DIR (a folder written by `pefomed prepare`)")
    if not path.is_file():
        raise UserError(f"{data_dir}: not a DATA_DIR (no {MANIFEST})",
                        hint="write it with `pefomed prepare`; an interrupted prepare leaves no DATA_DIR at all")
    manifest = read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits", {}), dict):
        raise UserError(f"{path}: expected an object with a 'splits' object")
    return manifest


REPREPARE = f"rerun {command_line('prepare', overwrite=True)}"  # the one remedy for a DATA_DIR changed after prepare
IMAGE_DIGESTS = "image_digests.jsonl"  # one {"path", "size", "sha256"} line per image, written by prepare
_verified: set[tuple[str, str, str]] = set()  # (DATA_DIR, digests sha256, split) checked in this process
_noted: set[str] = set()


def image_digest(data_dir: Path, rel: str) -> dict[str, Any]:
    path = Path(data_dir) / rel
    return {"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)}


def verify_images(data_dir: str | os.PathLike, manifest: dict, split: str, samples: list[Sample]) -> None:
    """The images `samples` read, checked against the size and sha256 prepare recorded for each
    (once per DATA_DIR and split in a process): a replaced or edited image is refused, naming it.
    A DATA_DIR written before digests existed is checked by count only, said once."""
    data_dir = Path(data_dir)
    entry = manifest.get("image_digests")
    if entry is None:
        if str(data_dir) not in _noted:
            _noted.add(str(data_dir))
            sys.stderr.write(f"note: {data_dir} has no image digests (prepared by an older pefomed or by hand); its "
                             f"images are checked by count only; rerun `pefomed prepare` to have them verified\n")
        return
    where = data_dir / MANIFEST
    if not isinstance(entry, dict) or entry.get("file") != IMAGE_DIGESTS or not isinstance(entry.get("sha256"), str):
        raise UserError(f"{where}: image_digests must be {{\"file\": \"{IMAGE_DIGESTS}\", \"sha256\": ...}}; the "
                        f"manifest was edited after prepare", hint=REPREPARE)
    mark = (str(data_dir.resolve()), entry["sha256"], split)
    if mark in _verified:
        return
    path = data_dir / IMAGE_DIGESTS
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err}); the DATA_DIR is incomplete",
                        hint=REPREPARE) from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise UserError(f"{path}: changed since prepare wrote it (its sha256 is not the one in {MANIFEST})",
                        hint=REPREPARE)
    recorded = {row.get("path"): row for _, row in iter_jsonl_lines(path, io.BytesIO(data)) if isinstance(row, dict)}
    if entry.get("images") is not None and entry["images"] != len(recorded):
        raise UserError(f"{where}: image_digests.images is {short(entry['images'], 40)}, {IMAGE_DIGESTS} lists "
                        f"{len(recorded)}; the manifest was edited after prepare", hint=REPREPARE)
    checked: set[str] = set()  # an image asked about by many questions is hashed once (VQA-RAD: ~11 each)
    for sample in samples:
        for rel in sample.images:
            rel = split_slice_ref(rel)[0]  # a volume's slices share the volume's one digest
            if rel in checked:
                continue
            checked.add(rel)
            row = recorded.get(rel)
            image = data_dir / rel
            if row is None:
                raise UserError(f"{data_dir / (split + '.jsonl')}: id {clip(sample.id)}: image {short(rel, 80)} has no "
                                f"digest in {IMAGE_DIGESTS} (added after prepare?)", hint=REPREPARE)
            try:
                size = image.stat().st_size
                actual = sha256_file(image) if size == row.get("size") else None
            except OSError as err:
                raise UserError(f"{image}: cannot read ({err.strerror or err}); the DATA_DIR is incomplete",
                                hint=REPREPARE) from None
            if actual != row.get("sha256"):
                raise UserError(f"{image}: changed since prepare wrote it ({'size' if actual is None else 'sha256'} "
                                f"differs from {IMAGE_DIGESTS}); refusing to train or infer on a replaced image",
                                hint=REPREPARE)
    _verified.add(mark)


def read_split(data_dir: str | os.PathLike, split: str) -> list[Sample]:
    """Read DATA_DIR/{split}.jsonl, checked against the manifest: the file's sha256 must be the
    one `prepare` recorded (a file changed or half-rewritten since is refused, naming it), ids
    must be unique (duplicates name both lines), image paths must stay inside DATA_DIR."""
    check_split_name(split)
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    splits = manifest.get("splits", {})
    path = data_dir / f"{split}.jsonl"
    entry = splits.get(split)
    if entry is None:
        if path.is_file():
            raise UserError(f"{path}: not listed in {data_dir / MANIFEST} (the file was added after prepare)",
                            hint=f"{REPREPARE}, or write hand-made splits with "
                                 "pefomed.records.write_split, which records them in the manifest")
        present = ", ".join(sorted(map(str, splits))) or "none"
        raise UserError(f"{path}: no '{split}' split in {data_dir} (splits present: {present})")
    expected = entry.get("sha256") if isinstance(entry, dict) else None
    if not isinstance(expected, str):
        raise UserError(f"{data_dir / MANIFEST}: splits.{split} has no sha256")
    # the split is always read from DATA_DIR/{split}.jsonl; a manifest that names another file
    # ("../other/train.jsonl", an absolute path) was edited by hand and vouches for nothing here
    if entry.get("file", path.name) != path.name:
        raise UserError(f"{data_dir / MANIFEST}: splits.{split}.file is {short(entry.get('file'), 80)}, expected "
                        f"{path.name!r} (a split file inside the DATA_DIR); the manifest was edited after prepare",
                        hint=REPREPARE)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: listed in {MANIFEST} but missing; the DATA_DIR is incomplete",
                        hint=REPREPARE) from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise UserError(f"{path}: changed since prepare wrote it (sha256 {actual[:12]}..., {MANIFEST} records "
                        f"{expected[:12]}...); refusing to read a split that may be half-written or edited",
                        hint=f"{REPREPARE} (or pefomed.records.write_split for hand-made splits)")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for lineno, row in iter_jsonl_lines(path, io.BytesIO(data)):
        sample = Sample.from_dict(row, f"{path}:{lineno}")
        if sample.id in seen:
            raise UserError(f"{path}:{lineno}: duplicate id {sample.id!r} (first on line {seen[sample.id]})")
        seen[sample.id] = lineno
        samples.append(sample)
    if not samples:
        raise UserError(f"{path}: the split is empty")
    count = entry.get("samples")
    if count is not None and (isinstance(count, bool) or count != len(samples)):
        raise UserError(f"{data_dir / MANIFEST}: splits.{split}.samples is {short(count, 40)}, but {path.name} holds "
                        f"{len(samples)} samples; the manifest was edited after prepare",
                        hint=REPREPARE)
    verify_images(data_dir, manifest, split, samples)
    return samples


def write_split(data_dir: str | os.PathLike, split: str, samples: list[Sample]) -> Path:
    """Write (or replace) one split of a DATA_DIR and record its sha256 and size in the manifest.

    For hand-made DATA_DIRs (tests, tools): readers refuse a split file the manifest does not
    vouch for. The split file is written first and the manifest second, each atomically, so
    a crash in between leaves a mismatch that read_split refuses, never a silent one.
    """
    check_split_name(split)
    data_dir = Path(data_dir)
    path = data_dir / f"{split}.jsonl"
    manifest_path = data_dir / MANIFEST
    manifest = read_json(manifest_path) if manifest_path.is_file() else {"manifest_version": 1, "tool": "pefomed"}
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path}: expected a JSON object")
    n = write_jsonl(path, (s.to_dict() for s in samples))
    manifest.setdefault("splits", {})[split] = {"file": path.name, "sha256": sha256_file(path), "samples": n}
    write_json(manifest_path, manifest)
    return path


def settings_path(pred: str | os.PathLike) -> Path:
    """PRED.jsonl -> PRED.settings.json: what `pefomed infer` asked, beside the answers (infer
    writes it, score's report reads it)."""
    pred = Path(pred)
    return pred.with_name(pred.name.removesuffix(".jsonl") + ".settings.json")


def iter_predictions(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Raw PRED.jsonl rows with their line numbers; pefomed.score validates the fields it needs.
    The optional container fields are checked here, where present: a falsy value of the wrong type
    (`"images": ""`, `"meta": ""`) must not read as "none" the way `raw.get(key) or []` would."""
    for lineno, raw in iter_jsonl(path):
        where = f"{path}:{lineno}"
        for key, kind, what in (("images", list, "a list of image paths"), ("meta", dict, "an object"),
                                ("predictions", list, "a non-empty list of answer strings"),
                                ("references", list, "a non-empty list of reference strings")):
            if key not in raw or raw[key] is None:
                continue
            value = raw[key]
            if not isinstance(value, kind) or (kind is list and not all(isinstance(x, str) for x in value)) \
                    or (key in ("predictions", "references") and not value):
                raise UserError(f"{where}: field '{key}' must be {what}, got {_kind_of(value)} {short(value, 60)}")
        yield lineno, raw


def _kind_of(value: Any) -> str:
    return "true/false" if isinstance(value, bool) else "a list" if isinstance(value, list) else type(value).__name__
