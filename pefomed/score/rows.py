"""Reading PRED.jsonl for scoring: every row checked, every problem named by file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pefomed.errors import UserError
from pefomed.io import short
from pefomed.records import ANSWER_TYPES, TASKS, Prediction, iter_predictions

REQUIRED = ("id", "prediction", "reference")
# meta keys that scoring groups or resamples by: each must be a plain value (text or a number),
# since a list or an object there would be turned into a group name by str().
GROUPING_META = ("question_type", "organ", "modality", "study_id", "patient_id", "subject_id")


# A scored row is a PRED.jsonl row (pefomed.records.Prediction): one schema for infer and score.
# read_rows guarantees what the metrics rely on: reference and task are set, question is text.
Row = Prediction


def _infer_task(row: dict[str, Any]) -> str | None:
    if row.get("task") is not None:
        return row["task"]
    if row.get("answer_type") is not None or row.get("question"):
        return "vqa"
    return None


def read_rows(path: str | os.PathLike, task: str | None = None) -> list[Row]:
    """Validated rows of one predictions file.

    `task` (vqa|report) forces the metrics family; rows that say they are the other task are an
    error rather than silently scored with the wrong metrics. Rows without `task` take `task`,
    or are inferred (a question or answer_type means vqa, otherwise report).
    """
    path = Path(path)
    if task is not None and task not in TASKS:
        raise UserError(f"`task` must be one of {TASKS}, got {task!r}")
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for lineno, raw in iter_predictions(path):
        where = f"{path}:{lineno}"
        for key in REQUIRED:
            if key not in raw or raw[key] is None:
                hint = "infer writes 'reference' only when the split has answers" if key == "reference" else None
                raise UserError(f"{where}: missing field '{key}'", hint=hint)
            if not isinstance(raw[key], str):
                raise UserError(f"{where}: field '{key}' must be a string, got {type(raw[key]).__name__}")
        row_id = raw["id"]
        if row_id in seen:
            raise UserError(f"{where}: duplicate id {short(row_id, 80)} (first on line {seen[row_id]})")
        seen[row_id] = lineno
        row_task = _infer_task(raw)
        if row_task is not None and row_task not in TASKS:
            raise UserError(f"{where}: task must be one of {TASKS}, got {short(row_task, 60)}")
        if task is not None and row_task is not None and row_task != task:
            other = "report-generation" if row_task == "report" else "VQA"
            raise UserError(f"{where}: id {short(row_id, 80)} is a {other} row (task={row_task!r}) but `task` {task} "
                            f"asks for {'VQA' if task == 'vqa' else 'report-generation'} metrics",
                            hint=f"score it with `task` {row_task}, or leave `task` out to score each row by its own task")
        answer_type = raw.get("answer_type")
        if answer_type is not None and answer_type not in ANSWER_TYPES:
            raise UserError(f"{where}: answer_type must be one of {ANSWER_TYPES}, got {short(answer_type, 60)}")
        question = raw.get("question")
        if question is not None and not isinstance(question, str):
            raise UserError(f"{where}: field 'question' must be a string, got {type(question).__name__}")
        meta = raw.get("meta") or {}
        if not isinstance(meta, dict):
            raise UserError(f"{where}: 'meta' must be an object")
        for key in GROUPING_META:
            value = meta.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int, float))):
                raise UserError(f"{where}: meta.{key} must be text or a number, got {type(value).__name__}")
        references = raw.get("references")
        if references is not None and (not isinstance(references, list) or not references
                                       or not all(isinstance(x, str) for x in references)):
            raise UserError(f"{where}: 'references' must be a non-empty list of strings")
        images = raw.get("images") or []
        if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
            raise UserError(f"{where}: 'images' must be a list of paths")
        rows.append(Row(id=row_id, references=references, prediction=raw["prediction"], reference=raw["reference"],
                        task=row_task or task or "report", answer_type=answer_type, images=images,
                        question=question or "", meta=meta, line=lineno))
    if not rows:
        raise UserError(f"{path}: no predictions (the file is empty)")
    return rows
