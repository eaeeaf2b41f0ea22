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

from pefomed.console import console
from pefomed.errors import UserError
from pefomed.infer.fewshot import Prompting, prompt_settings
from pefomed.io import short, write_json
from pefomed.models.source import ModelSource, load_source, resolve_source
from pefomed.recipe import Recipe


@dataclass
class InferOptions:
    """Everything `pefomed infer` takes besides what to answer; each None keeps the source's own
    setting (a RUN_DIR's recipe, or the defaults for a model never trained here)."""

    batch_size: Optional[int] = None  # default: the source recipe's infer.batch_size
    max_new_tokens: Optional[int] = None  # default: the source recipe's infer.max_new_tokens
    trust_remote_code: bool = False
    report_prompt: Optional[str] = None  # replaces data.report_prompt
    # system prompt, VQA template, few-shot, closed-answer ranking, blind (pefomed.infer.fewshot)
    prompting: Prompting = field(default_factory=Prompting)
    skip_bad: bool = False  # --images: skip unreadable, empty, truncated or too large images, listed beside PRED
    limit: Optional[int] = None  # answer a seeded subsample of this many samples (prompt selection)
    limit_seed: int = 0
    # sampling (None keeps the source recipe's infer.*): temperature 0 is greedy
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    seed: Optional[int] = None
    stop: Optional[list[str]] = None

    def check(self) -> None:
        for flag, value in (("--batch-size", self.batch_size), ("--max-new-tokens", self.max_new_tokens),
                            ("--limit", self.limit)):
            if value is not None and value < 1:
                raise UserError(f"{flag} must be at least 1, got {value}")

    def apply(self, recipe: Recipe) -> None:
        for key in ("temperature", "top_p", "repetition_penalty", "seed", "stop"):
            value = getattr(self, key)
            if value is not None:
                try:
                    setattr(recipe.infer, key, value)
                except Exception as err:  # pydantic's range checks
                    raise UserError(f"--{key.replace('_', '-')}: {_first_line(err)}") from None
        if self.report_prompt is not None:
            try:
                recipe.data.report_prompt = self.report_prompt
            except Exception as err:  # pydantic's validation of the prompt
                raise UserError(f"--report-prompt: {_first_line(err)}") from None


def subsample(samples: list, limit: int | None, seed: int) -> list:
    """`limit` samples drawn without replacement by a seeded generator, kept in input order; the
    draw depends on the seed and the ids only, so every model is evaluated on the same ones."""
    if limit is None or limit >= len(samples):
        return samples
    import random

    chosen = set(random.Random(seed).sample(sorted(s.id for s in samples), limit))
    return [s for s in samples if s.id in chosen]


def _first_line(err: Exception) -> str:
    errors = getattr(err, "errors", None)  # pydantic: the reason, not its "1 validation error" header
    if callable(errors):
        first = errors()[0]
        return f"{first['msg']} (got {first.get('input')!r})"
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def settings_path(out: Path) -> Path:
    """PRED.jsonl -> PRED.settings.json (what was asked, beside the answers)."""
    out = Path(out)
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".settings.json")


def skipped_path(out: Path) -> Path:
    """PRED.jsonl -> PRED.skipped.jsonl (images --skip-bad left out, with the reason)."""
    return settings_path(out).with_name(settings_path(out).name.replace(".settings.json", ".skipped.jsonl"))


def prediction_settings(source: ModelSource, recipe: Recipe, inputs: dict, prompt: dict, batch_size: int,
                        max_new_tokens: int) -> dict[str, Any]:
    return {
        "model": source.describe(),
        "base_model": recipe.model.name_or_path if recipe.model.kind == "hf" else recipe.model.kind,
        "inputs": inputs,
        "prompt": prompt,
        "generation": {"max_new_tokens": max_new_tokens, "num_beams": recipe.infer.num_beams,
                       "do_sample": recipe.infer.temperature > 0, "temperature": recipe.infer.temperature,
                       "top_p": recipe.infer.top_p, "repetition_penalty": recipe.infer.repetition_penalty,
                       "seed": recipe.infer.seed, "stop": list(recipe.infer.stop), "batch_size": batch_size},
    }


def _what_defines_the_answers(settings: dict) -> dict:
    """The settings a resumed run must share with the interrupted one (batch size may change)."""
    kept = json.loads(json.dumps(settings))
    if not kept["generation"].get("do_sample"):  # greedy answers do not depend on the batch size
        kept["generation"].pop("batch_size", None)
    for key in ("skip_bad", "skipped"):  # skipping bad images changes which samples, not their answers
        kept["inputs"].pop(key, None)
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


def trained_tasks(recipe: Recipe) -> set[str] | None:
    """The tasks (vqa, report) of the training split a run learned from, when its DATA_DIR's
    manifest is still readable; None when that cannot be told."""
    if not recipe.data.dir:
        return None
    try:
        manifest = json.loads((Path(recipe.data.dir) / "manifest.json").read_text(encoding="utf-8"))
        counts = manifest["counts"]["per_split"][recipe.data.train_split]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {str(key).split("/")[0] for key in counts if key != "total"} or None


def _check_report_request(source: ModelSource, recipe: Recipe, options: InferOptions) -> None:
    """`--images` without `--question` asks each image for a report: say so, and refuse it for a run
    that only ever learned to answer questions (its "reports" would be short answers)."""
    if options.report_prompt is None and source.kind == "run" and trained_tasks(recipe) == {"vqa"}:
        raise UserError(f"{source.text} was trained on VQA questions only, and --images without --question asks "
                        f"for reports", hint="pass --question \"...\" (or --report-prompt to ask for reports anyway)")
    console.print(f"no --question: asking each image for a report (prompt: {recipe.data.report_prompt!r})",
                  highlight=False, markup=False)


def infer(source_text: str, out: str | Path, data: str | Path | None = None, split: str = "test",
          images: str | Path | None = None, question: str | None = None,
          options: InferOptions | None = None) -> Path:
    """The library entry point of `pefomed infer`; returns the PRED.jsonl path."""
    from pefomed.infer.generate import predict
    from pefomed.infer.sources import drop_unreadable, folder_samples, split_samples

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
    skipped: list[dict] = []
    if options.skip_bad:
        if images is None:
            raise UserError("--skip-bad goes with --images (a DATA_DIR's images were checked by prepare)")
        samples, skipped = drop_unreadable(samples, root)
        for entry in skipped:
            console.print(f"skipped {entry['id']}: {entry['reason']}", highlight=False, markup=False)
    if not samples:
        raise UserError(f"{data or images}: nothing to answer" + (f" in split {split!r}" if data is not None else ""))
    if options.limit is not None:
        samples = subsample(samples, options.limit, options.limit_seed)
    recipe, bundle = load_source(source, trust_remote_code=options.trust_remote_code)
    options.apply(recipe)
    if images is not None and question is None:
        _check_report_request(source, recipe, options)
    batch_size = options.batch_size or recipe.infer.batch_size
    max_new_tokens = options.max_new_tokens or recipe.infer.max_new_tokens
    inputs = ({"data": str(Path(data).resolve()), "split": split} if data is not None
              else {"images": str(Path(images).resolve()), "question": question})
    if options.limit is not None:
        inputs.update(limit=options.limit, limit_seed=options.limit_seed)
    if options.skip_bad:
        inputs.update(skip_bad=True, skipped=len(skipped))
    prompt = prompt_settings(samples, root, recipe, bundle.processor, options.prompting,
                             max_new_tokens=max_new_tokens)
    settings = prediction_settings(source, recipe, inputs, prompt, batch_size, max_new_tokens)
    _claim_partial(out, settings, samples)
    predict(samples, root, recipe, bundle, out, batch_size=batch_size, max_new_tokens=max_new_tokens,
            with_references=data is not None, prompting=options.prompting)
    if options.skip_bad:
        from pefomed.io import write_jsonl

        write_jsonl(skipped_path(out), skipped)  # every skipped image with its reason, beside PRED.jsonl
    _publish_settings(out, settings)
    return out
