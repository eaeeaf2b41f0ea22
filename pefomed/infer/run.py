"""`pefomed infer`: answer a prepared split or a folder of images with any model source (a trained
RUN_DIR, or a base model never trained here: the zero-shot baseline), write PRED.jsonl and, beside
it, PRED.settings.json saying what was asked (model source, prompts, generation settings).

An interrupted run leaves PRED.jsonl.partial plus PRED.settings.json.partial; the same command
resumes from them. A .partial written for other inputs (another model, data set, split or prompt)
is refused rather than mixed into the new answers.

Data-parallel: under a launcher (`torchrun --nproc_per_node N -m pefomed.cli.app infer ...`, or
`deepspeed`) that sets RANK and WORLD_SIZE, process r answers samples r, r+N, r+2N, ... of the input
order into PRED.jsonl.part-r-of-N (through its own resumable .partial), and rank 0 merges the N
parts into PRED.jsonl in input order once every part is complete. The processes exchange nothing
but these files and one gloo barrier at the start (no GPU collective), so CPU and GPU runs alike
need only the launcher's rendezvous address.

Throughput: `--workers N` builds the batches (images decoded, prompts encoded and padded) in N
DataLoader worker processes ahead of the model (pefomed.infer.batches; the same file either way);
`--batch-size auto` finds the largest batch that fits on CUDA (pefomed.infer.batch_size).
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

from pefomed.console import console
from pefomed.errors import UserError
from pefomed.infer.fewshot import Prompting, prompt_settings
from pefomed.options import flag_of
from pefomed.options.infer import InferOptions
from pefomed.io import short, write_json
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


def _settings_record(out: Path) -> Path:
    """PRED.settings.json.partial: the settings of a run still writing (or interrupted)."""
    return settings_path(out).with_name(settings_path(out).name + ".partial")


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


def _what_defines_the_answers(settings: dict) -> dict:
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
    record = _settings_record(out)
    if partial.exists():
        _check_previous_settings(record, settings, partial)
        _check_partial_rows(partial, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(record, settings)


def _publish_settings(out: Path, settings: dict) -> None:
    record = _settings_record(out)
    write_json(settings_path(out), settings)
    if record.exists():
        os.remove(record)


def process_shard() -> tuple[int, int]:
    """(rank, number of processes) set by a launcher (torchrun, deepspeed: RANK and WORLD_SIZE), or
    (0, 1) for a plain `pefomed infer`."""
    raw_rank, raw_world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if raw_world is None:
        return 0, 1
    try:
        rank, world = int(raw_rank if raw_rank is not None else 0), int(raw_world)
    except ValueError:
        raise UserError(f"RANK={raw_rank!r}, WORLD_SIZE={raw_world!r} in the environment: not whole numbers "
                        f"(they are set by torchrun or deepspeed)") from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK={rank}, WORLD_SIZE={world} in the environment: RANK must be 0 to WORLD_SIZE-1")
    return rank, world


def part_path(out: Path, rank: int, world: int) -> Path:
    """PRED.jsonl -> PRED.jsonl.part-RANK-of-N: one process's answers (complete once renamed from .partial)."""
    return out.with_name(f"{out.name}.part-{rank}-of-{world}")


_PART = re.compile(r"\.part-(\d+)-of-(\d+)(\.partial)?$")


def _leftover_parts(out: Path) -> list[tuple[Path, int, int]]:
    """Part files an earlier data-parallel run left beside `out`: (path, rank, world)."""
    found = []
    if out.parent.is_dir():
        for path in sorted(out.parent.glob(glob.escape(out.name) + ".part-*")):
            match = _PART.fullmatch(path.name[len(out.name):])
            if match:
                found.append((path, int(match.group(1)), int(match.group(2))))
    return found


def _check_layout(out: Path, world: int) -> None:
    """An interrupted run is resumed by as many processes as it had: each shard's .partial only
    holds the samples of its own interleave."""
    partial = out.with_name(out.name + ".partial")
    if world > 1 and partial.exists():
        raise UserError(f"{partial}: an interrupted run of one process left these answers; rerun it without a "
                        f"launcher to resume it, or remove the file to start afresh with {world} processes")
    for path, _, other in _leftover_parts(out):
        if other != world:
            how = "without a launcher" if world == 1 else f"with {world} processes"
            raise UserError(f"{path}: an interrupted run of {other} processes left these answers; resume it with "
                            f"`torchrun --nproc_per_node {other} -m pefomed.cli.app infer ...` (the same command), "
                            f"or remove its {out.name}.part-* files to start afresh {how}")


def _claim_shard(out: Path, settings: dict, samples: list, rank: int, world: int) -> None:
    """_claim_partial for one process of a data-parallel run: every process checks the settings
    record against its own; only rank 0 writes it (the others' settings are the same)."""
    part = part_path(out, rank, world)
    record = _settings_record(out)
    shard = samples[rank::world]
    if rank != 0:
        if part.exists() or part.with_name(part.name + ".partial").exists():
            _check_previous_settings(record, settings, part)
        for path in (part, part.with_name(part.name + ".partial")):
            if path.exists():
                _check_partial_rows(path, shard)
        return
    leftovers = _leftover_parts(out)
    if leftovers:
        _check_previous_settings(record, settings, leftovers[0][0])
        for path, other_rank, _ in leftovers:
            _check_partial_rows(path, samples[other_rank::world])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(record, settings)


def _check_previous_settings(record: Path, settings: dict, answers: Path) -> None:
    try:
        previous = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
    except (OSError, ValueError):
        previous = None
    if previous is not None and _what_defines_the_answers(previous) != _what_defines_the_answers(settings):
        raise UserError(f"{answers}: an interrupted run with other inputs (model, data, split, prompt or image "
                        f"ablation) left "
                        f"these answers; remove it to start afresh, or rerun that run's exact command")


def _wait_for_parts(out: Path, world: int, poll_s: float = 0.5) -> None:
    """Rank 0 waits for every process's complete part. A process that fails makes the launcher
    (torchrun, deepspeed) stop the others, rank 0 included, so the wait never outlives the run."""
    import time

    waiting = [r for r in range(world) if not part_path(out, r, world).exists()]
    if waiting:
        console.print(f"waiting for the parts of process(es) {', '.join(map(str, waiting))} to merge them",
                      highlight=False, markup=False)
    while any(not part_path(out, r, world).exists() for r in range(world)):
        time.sleep(poll_s)


def _merge_parts(out: Path, world: int, order: list[str]) -> None:
    """The N complete parts -> PRED.jsonl in input order, atomically, checked to answer every
    sample exactly once; the parts are removed only then."""
    from pefomed.io import atomic_write

    position = {sample_id: i for i, sample_id in enumerate(order)}
    rows: list[tuple[int, bytes]] = []
    for rank in range(world):
        part = part_path(out, rank, world)
        with open(part, "rb") as handle:
            for number, line in enumerate(handle, 1):
                sample_id = json.loads(line)["id"]
                if sample_id not in position:
                    raise UserError(f"{part}:{number}: id {short(sample_id)} is not a sample of these inputs; "
                                    f"remove the {out.name}.part-* files to start afresh")
                rows.append((position[sample_id], line))
    rows.sort(key=lambda row: row[0])
    answered = [i for i, _ in rows]
    if answered != list(range(len(order))):
        seen = set(answered)
        from collections import Counter

        twice = sorted(order[i] for i, count in Counter(answered).items() if count > 1)
        missing = [order[i] for i in range(len(order)) if i not in seen]
        raise UserError(f"{out}: the {world} parts do not answer every sample exactly once (missing "
                        f"{short(missing[:3])}, twice {short(twice[:3])}); remove the {out.name}.part-* files "
                        f"to start afresh")
    with atomic_write(out, "wb", encoding=None) as handle:
        handle.writelines(line if line.endswith(b"\n") else line + b"\n" for _, line in rows)
    for rank in range(world):
        os.remove(part_path(out, rank, world))


_OWN_GROUP: list = []  # the process group _meet created (and only that one is destroyed after)


def _meet(world: int) -> None:
    """A gloo barrier (CPU and GPU alike) when a launcher gave a rendezvous address. Without it a
    fast rank 0 could merge and remove a complete part of an interrupted run while a slower process
    is still deciding whether its part is complete, and then answer its shard again."""
    if world == 1 or "MASTER_ADDR" not in os.environ:
        return
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        # generous: processes load their models at different speeds; a failed one makes the
        # launcher stop the others long before this
        dist.init_process_group("gloo", timeout=timedelta(hours=2))
        _OWN_GROUP.append(True)
    dist.barrier()


def _part_company() -> None:
    """Destroy the group _meet made, never one that existed before (a caller's training group)."""
    import torch.distributed as dist

    if _OWN_GROUP and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _OWN_GROUP.clear()


def _use_local_device(world: int) -> None:
    """One GPU per process: LOCAL_RANK picks it, so that the model's "cuda" is this process's."""
    if world > 1:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


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


def _interrupted_settings(out: Path) -> dict | None:
    """The settings record of an interrupted run to `out` (one whose answers are still there)."""
    record = _settings_record(out)
    if not record.exists() or not (out.with_name(out.name + ".partial").exists() or _leftover_parts(out)):
        return None
    try:
        previous = json.loads(record.read_text(encoding="utf-8"))
        return previous["generation"] if isinstance(previous.get("generation"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


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
                                   recipe.infer.batch_size, _interrupted_settings(out))
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
    _check_layout(out, world)
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
    _use_local_device(world)
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
        _claim_partial(out, settings, samples)
        predict(samples, root, recipe, bundle, out, **run)
    else:
        # a deterministic interleave of the input order: every shard gets prompts of every length
        _claim_shard(out, settings, samples, rank, world)
        shard, part = samples[rank::world], part_path(out, rank, world)
        todo = not part.exists()  # a complete part of an interrupted run is kept as it is
        _meet(world)  # rank 0 merges (and removes) parts only after every process has looked at its own
        if todo:
            if shard:
                predict(shard, root, recipe, bundle, part, **run)
            else:  # more processes than samples
                from pefomed.io import atomic_write

                with atomic_write(part, "wb", encoding=None):
                    pass
        if rank != 0:
            _part_company()
            return out
        _wait_for_parts(out, world)
        _merge_parts(out, world, [s.id for s in samples])
        _part_company()
    if options.skip_bad:
        from pefomed.io import write_jsonl

        write_jsonl(skipped_path(out), skipped)  # every skipped image with its reason, beside PRED.jsonl
    _publish_settings(out, settings)
    return out
