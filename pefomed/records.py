"""The records every stage passes on: a prepared sample and a prediction.

These are the row formats of `DATA_DIR/{train,val,test}.jsonl` and `PRED.jsonl`
(docs/formats.md). Readers validate each row and name the file and line of the first bad one.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pefomed.errors import UserError
from pefomed.io import iter_jsonl

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
            raise UserError(f"{where}: id {sample_id}: task must be one of {TASKS}, got {task!r}")
        images = need("images", list)
        if not all(isinstance(p, str) for p in images):
            raise UserError(f"{where}: id {sample_id}: 'images' must be a list of paths")
        answer = need("answer", str)
        question = row.get("question")
        if task == "vqa" and not isinstance(question, str):
            raise UserError(f"{where}: id {sample_id}: a vqa sample needs a 'question' string")
        answer_type = row.get("answer_type")
        if answer_type is not None and answer_type not in ANSWER_TYPES:
            raise UserError(f"{where}: id {sample_id}: answer_type must be one of {ANSWER_TYPES}, got {answer_type!r}")
        meta = row.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserError(f"{where}: id {sample_id}: 'meta' must be an object")
        return cls(id=sample_id, task=task, images=images, answer=answer, question=question,
                   prompt=row.get("prompt"), answer_type=answer_type, meta=meta)


@dataclass
class Prediction:
    """One row of PRED.jsonl. `reference`, `answer_type`, `task`, `meta` are set when known."""

    id: str
    images: list[str]
    question: str
    prediction: str
    reference: str | None = None
    answer_type: str | None = None
    task: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        return {k: v for k, v in row.items() if v is not None}


def read_split(data_dir: str | os.PathLike, split: str) -> list[Sample]:
    """Read DATA_DIR/{split}.jsonl; duplicate ids are an error naming both lines."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        present = sorted(p.stem for p in Path(data_dir).glob("*.jsonl"))
        raise UserError(f"{path}: no '{split}' split in {data_dir} (splits present: {', '.join(present) or 'none'})")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for lineno, row in iter_jsonl(path):
        sample = Sample.from_dict(row, f"{path}:{lineno}")
        if sample.id in seen:
            raise UserError(f"{path}:{lineno}: duplicate id {sample.id!r} (first on line {seen[sample.id]})")
        seen[sample.id] = lineno
        samples.append(sample)
    if not samples:
        raise UserError(f"{path}: the split is empty")
    return samples


def iter_predictions(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """Raw PRED.jsonl rows with their line numbers; pefomed.score validates the fields it needs."""
    yield from iter_jsonl(path)
