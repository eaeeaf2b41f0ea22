"""`pefomed infer`: answer a prepared split or a folder of images with any model source (a trained
RUN_DIR, or a base model never trained here: the zero-shot baseline), write PRED.jsonl and, beside
it, PRED.settings.json saying what was asked (model source, prompts, generation settings).

An interrupted run resumes from its .partial files (pefomed.infer.resume); under a launcher each
process answers its shard and rank 0 merges them (pefomed.infer.shards). The options are declared
in pefomed.options.infer.

Throughput: `--workers N` builds the batches (images decoded, prompts encoded and padded) in N
DataLoader worker processes ahead of the model (pefomed.infer.batches; the same file either way);
`--batch-size auto` finds the largest batch that fits on CUDA (pefomed.infer.batch_size).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pefomed.console import console
from pefomed.errors import UserError
from pefomed.infer.fewshot import Prompting, prompt_settings
from pefomed.infer.resume import claim_partial, interrupted_settings, publish_settings
from pefomed.infer.shards import (check_layout, claim_shard, meet, merge_parts, part_company, part_path,
                                  process_shard, use_local_device, wait_for_parts)
from pefomed.options import flag_of
from pefomed.options.infer import InferOptions
from pefomed.models.source import ModelSource, load_source, resolve_source
from pefomed.recipe import Recipe
from pefomed.records import settings_path


def subsample(samples: list, limit: int | None, seed: int) -> list:
    """`limit` samples drawn without replacement by a seeded generator, kept in input order; the
    draw depends on the seed and the ids only, so every model is evaluated on the same ones."""
    if limit is None or limit >= len(samples):
        return samples
    import random

    chosen = set(random.Random(seed).sample(sorted(s.id for s in samples), limit))
    return [s for s in samples if s.id in chosen]


def skipped_path(out: Path) -> Path:
    """PRED.jsonl -> PRED.skipped.jsonl (images --skip-bad left out, with the reason)."""
    return settings_path(out).with_name(settings_path(out).name.replace(".settings.json", ".skipped.jsonl"))


def prediction_settings(source: ModelSource, recipe: Recipe, inputs: dict, prompt: dict, batch_size: int,
                        max_new_tokens: int, processes: int = 1, workers: int = 0,
                        batch_size_auto: dict | None = None, processor=None) -> dict[str, Any]:
    from pefomed.data.transforms import describe as describe_images

    settings = {
        "model": source.describe(),
        "base_model": recipe.model.name_or_path if recipe.model.kind == "hf" else recipe.model.kind,
        "inputs": inputs,
        "prompt": prompt,
        "image_transform": describe_images(recipe.data, processor),  # data.eval_transform
        "generation": {"max_new_tokens": max_new_tokens, "num_beams": recipe.infer.num_beams,
                       "do_sample": recipe.infer.temperature > 0, "temperature": recipe.infer.temperature,
                       "top_p": recipe.infer.top_p, "repetition_penalty": recipe.infer.repetition_penalty,
                       "seed": recipe.infer.seed, "stop": list(recipe.infer.stop),
                       "num_return_sequences": recipe.infer.num_return_sequences, "batch_size": batch_size,
                       "processes": processes, "workers": workers},
    }
    if recipe.infer.answer_template != "none":  # only when set: settings of earlier runs stay as they were
        settings["generation"]["answer_template"] = recipe.infer.answer_template
    if batch_size_auto is not None:  # --batch-size auto: how the size was chosen
        settings["generation"]["batch_size_auto"] = batch_size_auto
    return settings


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
        raise UserError(f"{source.text} was trained on VQA questions only, and `images` without `question` asks "
                        f"for reports", hint="pass `question` \"...\" (or `report_prompt` to ask for reports anyway)")
    console.print(f"no {flag_of('infer', 'question')}: asking each image for a report (prompt: "
                  f"{recipe.data.report_prompt!r})",
                  highlight=False, markup=False)


def _check_several_images(processor, frames: int) -> None:
    """--series-frames N > 1 puts N images in one prompt: only families that place each at its own
    placeholder take that (the few-shot families, pefomed.data.collate.FEW_SHOT_FAMILIES)."""
    from pefomed.data.collate import FEW_SHOT_FAMILIES

    if not any(cls.__name__ in FEW_SHOT_FAMILIES for cls in type(processor).__mro__):
        raise UserError(f"`series_frames` {frames}: {type(processor).__name__} cannot place several images in one "
                        f"prompt (families that can: {', '.join(FEW_SHOT_FAMILIES)})",
                        hint="use `series_frames` 1 (the middle slice) with this model")


def _batch_size(options: InferOptions, recipe: Recipe, bundle, mine: list, root: Path, max_new_tokens: int,
                out: Path) -> tuple[int, dict | None]:
    """(batch size, how --batch-size auto chose it, or None): a number given, the recipe's, or
    the largest that fits on this process's GPU for its own samples (pefomed.infer.batch_size)."""
    if options.batch_size != "auto":
        return options.batch_size or recipe.infer.batch_size, None
    if not mine:  # a process of a data-parallel run with more processes than samples
        return recipe.infer.batch_size, {"device": "none", "rule": "no samples to probe", "tried": []}
    from pefomed.infer.batch_size import auto_batch_size
    from pefomed.infer.generate import by_prompt_length, resolve_prompting, make_generator

    prompting, data, exemplars = resolve_prompting(mine, root, recipe, bundle, options.prompting)
    generate = make_generator(recipe, bundle, data, root, max_new_tokens, prompting)
    size, record = auto_batch_size(generate, by_prompt_length(mine, data, exemplars), exemplars,
                                   recipe.infer.batch_size, interrupted_settings(out))
    console.print(f"{flag_of('infer', 'batch_size')} auto: {size} ({record['device']}"
                  + (f"; tried {', '.join(str(t['batch_size']) for t in record['tried'])})" if record["tried"]
                     else ": the source recipe's infer.batch_size, nothing to probe)"), highlight=False, markup=False)
    return size, record


def infer(source_text: str, out: str | Path, data: str | Path | None = None, split: str = "test",
          images: str | Path | None = None, question: str | None = None,
          options: InferOptions | None = None, questions: str | Path | None = None) -> Path:
    """The library entry point of `pefomed infer`; returns the PRED.jsonl path."""
    from pefomed.infer.generate import predict
    from pefomed.infer.sources import drop_unreadable, folder_samples, questions_samples, split_samples

    options = options or InferOptions()
    out = Path(out)
    if out.is_dir():
        raise UserError(f"`out` {out}: is a folder; give the PRED.jsonl file to write")
    if (data is None) == (images is None):
        raise UserError("give exactly one of `data` DATA_DIR or `images` FOLDER")
    if question is not None and images is None:
        raise UserError("`question` goes with `images` (a DATA_DIR brings its own questions)")
    if questions is not None and images is None:
        raise UserError("`questions` goes with `images` FOLDER (its image paths are relative to that folder)")
    if questions is not None and question is not None:
        raise UserError("give one of `question` (every image) or `questions` FILE (a question per row)")
    if options.series_frames != 1 and (images is None or questions is not None):
        raise UserError("`series_frames` goes with `images` FOLDER (its DICOM series and NIfTI volumes), without "
                        "`questions` (whose rows name single image files)")
    rank, world = process_shard()
    source = resolve_source(str(source_text))  # cheap: a wrong path fails before the data is read
    check_layout(out, world)
    with_references = data is not None
    if questions is not None:
        samples, root, with_references = questions_samples(questions, images)
    else:
        samples, root = (split_samples(data, split) if data is not None
                         else folder_samples(images, question, options.series_frames))
    skipped: list[dict] = []
    if options.skip_bad:
        if images is None:
            raise UserError("`skip_bad` goes with `images` (a DATA_DIR's images were checked by prepare)")
        samples, skipped = drop_unreadable(samples, root, options.num_workers)
        for entry in skipped if rank == 0 else []:
            console.print(f"skipped {entry['id']}: {entry['reason']}", highlight=False, markup=False)
    if not samples:
        raise UserError(f"{data or images}: nothing to answer" + (f" in split {split!r}" if data is not None else "")
                        + (f" (`skip_bad` skipped all {len(skipped)} images)" if skipped else ""))
    if options.limit is not None:
        samples = subsample(samples, options.limit, options.limit_seed)
    # who is shown which image, from every sample: the same in each process of a data-parallel run
    options.prompting = Prompting.of(options.prompting).with_ablation(samples)
    use_local_device(world)
    recipe, bundle = load_source(source, trust_remote_code=options.trust_remote_code)
    options.apply(recipe)
    from pefomed.models.generation import check_return_sequences

    check_return_sequences(recipe.infer.num_return_sequences, recipe.infer.num_beams, recipe.infer.temperature > 0)
    if options.series_frames > 1:
        _check_several_images(bundle.processor, options.series_frames)
    if images is not None and question is None and questions is None and rank == 0:
        _check_report_request(source, recipe, options)
    max_new_tokens = options.max_new_tokens or recipe.infer.max_new_tokens
    inputs = ({"data": str(Path(data).resolve()), "split": split} if data is not None
              else {"images": str(Path(images).resolve()), "question": question,
                    "series_frames": options.series_frames})
    if questions is not None:
        from pefomed.io import sha256_file

        inputs.update(questions=str(Path(questions).resolve()), questions_sha256=sha256_file(questions))
    if options.limit is not None:
        inputs.update(limit=options.limit, limit_seed=options.limit_seed)
    if options.skip_bad:
        inputs.update(skip_bad=True, skipped=len(skipped))
    prompt = prompt_settings(samples, root, recipe, bundle.processor, options.prompting,
                             max_new_tokens=max_new_tokens)
    batch_size, auto = _batch_size(options, recipe, bundle, samples[rank::world], root, max_new_tokens, out)
    settings = prediction_settings(source, recipe, inputs, prompt, batch_size, max_new_tokens, processes=world,
                                   workers=options.num_workers, batch_size_auto=auto, processor=bundle.processor)
    run = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, with_references=with_references,
               prompting=options.prompting, num_workers=options.num_workers)
    if world == 1:
        claim_partial(out, settings, samples)
        predict(samples, root, recipe, bundle, out, **run)
    else:
        # a deterministic interleave of the input order: every shard gets prompts of every length
        claim_shard(out, settings, samples, rank, world)
        shard, part = samples[rank::world], part_path(out, rank, world)
        todo = not part.exists()  # a complete part of an interrupted run is kept as it is
        meet(world)  # rank 0 merges (and removes) parts only after every process has looked at its own
        if todo:
            if shard:
                predict(shard, root, recipe, bundle, part, **run)
            else:  # more processes than samples
                from pefomed.io import atomic_write

                with atomic_write(part, "wb", encoding=None):
                    pass
        if rank != 0:
            part_company()
            return out
        wait_for_parts(out, world)
        merge_parts(out, world, [s.id for s in samples])
        part_company()
    if options.skip_bad:
        from pefomed.io import write_jsonl

        write_jsonl(skipped_path(out), skipped)  # every skipped image with its reason, beside PRED.jsonl
    publish_settings(out, settings)
    return out
