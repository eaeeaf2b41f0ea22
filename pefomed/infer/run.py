"""`pefomed infer`: answer a prepared split or a folder of images with any model source (a trained
RUN_DIR, or a base model never trained here: the zero-shot baseline), write PRED.jsonl and, beside
it, PRED.settings.json saying what was asked (model source, prompts, generation settings).

An interrupted run leaves PRED.jsonl.partial plus PRED.settings.json.partial; the same command
resumes from them. A .partial written for other inputs (another model, data set, split or prompt)
is refused rather than mixed into the new answers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pefomed.errors import UserError
from pefomed.io import short, write_json
from pefomed.models.source import ModelSource, load_source, resolve_source
from pefomed.recipe import Recipe


@dataclass
class PromptOptions:
    """Prompt overrides; None keeps the source's own (a RUN_DIR's recipe, or the defaults)."""

    vqa_template: Optional[str] = None  # instruction template with {question}, or pool:NAME
    report_prompt: Optional[str] = None

    def apply(self, recipe: Recipe) -> None:
        try:
            if self.vqa_template is not None:
                recipe.data.vqa_template = self.vqa_template
            if self.report_prompt is not None:
                recipe.data.report_prompt = self.report_prompt
        except Exception as err:  # pydantic's validation of the template (e.g. no {question})
            raise UserError(f"--template/--report-prompt: {_first_line(err)}") from None


@dataclass
class InferOptions:
    batch_size: Optional[int] = None  # default: the source recipe's infer.batch_size
    max_new_tokens: Optional[int] = None  # default: the source recipe's infer.max_new_tokens
    trust_remote_code: bool = False
    prompt: PromptOptions = field(default_factory=PromptOptions)

    def check(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def settings_path(out: Path) -> Path:
    """PRED.jsonl -> PRED.settings.json (what was asked, beside the answers)."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".settings.json")


def prediction_settings(source: ModelSource, recipe: Recipe, inputs: dict, batch_size: int,
                        max_new_tokens: int) -> dict[str, Any]:
    return {
        "model": source.describe(),
        "base_model": recipe.model.name_or_path if recipe.model.kind == "hf" else recipe.model.kind,
        "inputs": inputs,
        "prompt": {"vqa_template": recipe.data.vqa_template, "report_prompt": recipe.data.report_prompt,
                   "template_seed": recipe.data.template_seed},
        "generation": {"max_new_tokens": max_new_tokens, "num_beams": recipe.infer.num_beams,
                       "do_sample": False, "batch_size": batch_size},
    }


def _what_defines_the_answers(settings: dict) -> dict:
    """The settings a resumed run must share with the interrupted one (batch size may change)."""
    kept = json.loads(json.dumps(settings))
    kept["generation"].pop("batch_size", None)
    return kept


def _check_partial_rows(partial: Path, samples: list) -> None:
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


def _claim_partial(out: Path, settings: dict, samples: list) -> None:
    """Refuse to resume a .partial that was written for other inputs; record ours for the next resume."""
    partial = out.with_name(out.name + ".partial")
    record = settings_path(out).with_name(settings_path(out).name + ".partial")
    if partial.exists():
        try:
            previous = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
        except (OSError, ValueError):
            previous = None
        if previous is not None and _what_defines_the_answers(previous) != _what_defines_the_answers(settings):
            raise UserError(f"{partial}: an interrupted run with other inputs (model, data, split or prompt) left "
                            f"these answers; remove it to start afresh, or rerun that run's exact command")
        _check_partial_rows(partial, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(record, settings)


def _publish_settings(out: Path, settings: dict) -> None:
    record = settings_path(out).with_name(settings_path(out).name + ".partial")
    write_json(settings_path(out), settings)
    if record.exists():
        os.remove(record)


def infer(source_text: str, out: str | Path, data: str | Path | None = None, split: str = "test",
          images: str | Path | None = None, question: str | None = None,
          options: InferOptions | None = None) -> Path:
    """The library entry point of `pefomed infer`; returns the PRED.jsonl path."""
    from pefomed.infer.generate import predict
    from pefomed.infer.sources import folder_samples, split_samples

    options = options or InferOptions()
    options.check()
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the PRED.jsonl file to write")
    if (data is None) == (images is None):
        raise UserError("give exactly one of --data DATA_DIR or --images FOLDER")
    if question is not None and images is None:
        raise UserError("--question goes with --images (a DATA_DIR brings its own questions)")
    source = resolve_source(str(source_text))  # cheap: a wrong path fails before the data is read
    samples, root = split_samples(data, split) if data is not None else folder_samples(images, question)
    if not samples:
        raise UserError(f"{data or images}: nothing to answer" + (f" in split {split!r}" if data is not None else ""))
    recipe, bundle = load_source(source, trust_remote_code=options.trust_remote_code)
    options.prompt.apply(recipe)
    batch_size = options.batch_size or recipe.infer.batch_size
    max_new_tokens = options.max_new_tokens or recipe.infer.max_new_tokens
    inputs = ({"data": str(Path(data).resolve()), "split": split} if data is not None
              else {"images": str(Path(images).resolve()), "question": question})
    settings = prediction_settings(source, recipe, inputs, batch_size, max_new_tokens)
    _claim_partial(out, settings, samples)
    predict(samples, root, recipe, bundle, out, batch_size=batch_size, max_new_tokens=max_new_tokens,
            with_references=data is not None)
    _publish_settings(out, settings)
    return out
