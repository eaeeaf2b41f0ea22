"""`pefomed infer`'s settings record and resume: PRED.settings.json says what was asked; an
interrupted run leaves PRED.jsonl.partial + PRED.settings.json.partial, and the same command resumes
from them only when the settings that define the answers are the same (a .partial written for
another model, data set, split or prompt is refused rather than mixed into the new answers)."""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path

from pefomed.errors import UserError
from pefomed.io import short, write_json
from pefomed.records import settings_path


def settings_record(out: Path) -> Path:
    """PRED.settings.json.partial: the settings of a run still writing (or interrupted)."""
    return settings_path(out).with_name(settings_path(out).name + ".partial")


def what_defines_the_answers(settings: dict) -> dict:
    """The settings a resumed run must share with the interrupted one (batch size may change)."""
    kept = json.loads(json.dumps(settings))
    # decoding workers and how a batch size was found change no answer; settings written before
    # these keys existed meant one answer per question and one slice per DICOM file
    for key in ("workers", "batch_size_auto"):
        kept["generation"].pop(key, None)
    kept["generation"].setdefault("num_return_sequences", 1)
    if "image_transform" not in kept:  # written before data.eval_transform existed: the deterministic one
        from pefomed.data.transforms import describe as describe_images

        kept["image_transform"] = describe_images(None)
    if "images" in kept["inputs"]:
        kept["inputs"].setdefault("series_frames", 1)
    if isinstance(kept.get("prompt"), dict):  # written before image ablations existed: none
        kept["prompt"].setdefault("image_ablation", None)
    if not kept["generation"].get("do_sample"):  # greedy answers depend on neither batch size nor sharding
        kept["generation"].pop("batch_size", None)
        kept["generation"].pop("processes", None)
    for key in ("skip_bad", "skipped"):  # skipping bad images changes which samples, not their answers
        kept["inputs"].pop(key, None)
    return kept


def check_partial_rows(partial: Path, samples: list) -> None:
    """Every whole line of a .partial must answer one of this run's samples, with its images."""
    by_id = {sample.id: sample for sample in samples}
    with open(partial, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                break  # a torn last line: resume drops it
            try:
                row = json.loads(raw)
            except ValueError:
                break  # the line resume will cut
            sample = by_id.get(row.get("id")) if isinstance(row, dict) else None
            if sample is None or row.get("images") != sample.images:
                raise UserError(f"{partial}:{number}: this interrupted run's line does not answer a sample of these "
                                f"inputs (id {short(row.get('id') if isinstance(row, dict) else row)}); remove the "
                                f".partial file to start afresh")


def claim_partial(out: Path, settings: dict, samples: list) -> None:
    """Refuse to resume a .partial that was written for other inputs; record ours for the next resume."""
    partial = out.with_name(out.name + ".partial")
    record = settings_record(out)
    if partial.exists():
        check_previous_settings(record, settings, partial)
        check_partial_rows(partial, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(record, settings)


def publish_settings(out: Path, settings: dict) -> None:
    record = settings_record(out)
    write_json(settings_path(out), settings)
    if record.exists():
        os.remove(record)


def check_previous_settings(record: Path, settings: dict, answers: Path) -> None:
    try:
        previous = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
    except (OSError, ValueError):
        previous = None
    if previous is not None and what_defines_the_answers(previous) != what_defines_the_answers(settings):
        raise UserError(f"{answers}: an interrupted run with other inputs (model, data, split, prompt or image "
                        f"ablation) left "
                        f"these answers; remove it to start afresh, or rerun that run's exact command")


def interrupted_settings(out: Path) -> dict | None:
    """The settings record of an interrupted run to `out` (one whose answers are still there)."""
    record = settings_record(out)
    if not record.exists() or not (out.with_name(out.name + ".partial").exists() or leftover_parts(out)):
        return None
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
        return previous["generation"] if isinstance(previous.get("generation"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def part_path(out: Path, rank: int, world: int) -> Path:
    """PRED.jsonl -> PRED.jsonl.part-RANK-of-N: one process's answers (complete once renamed from .partial)."""
    return out.with_name(f"{out.name}.part-{rank}-of-{world}")


_PART = re.compile(r"\.part-(\d+)-of-(\d+)(\.partial)?$")


def leftover_parts(out: Path) -> list[tuple[Path, int, int]]:
    """Part files an earlier data-parallel run left beside `out`: (path, rank, world)."""
    found = []
    if out.parent.is_dir():
        for path in sorted(out.parent.glob(glob.escape(out.name) + ".part-*")):
            match = _PART.fullmatch(path.name[len(out.name):])
            if match:
                found.append((path, int(match.group(1)), int(match.group(2))))
    return found
