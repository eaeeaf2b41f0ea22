"""`pefomed infer`: answer samples in batches and write PRED.jsonl, resumably.

Generation itself (greedy by default, KV cache on) is pefomed.models.generation.Generator; closed
questions may be ranked instead (pefomed.infer.rank), and the prompt may carry a system prompt,
another template, few-shot exemplars, no image or an ablated one (pefomed.infer.fewshot.Prompting). Batches are
encoded by pefomed.infer.batches.EncodedBatches, in worker processes with `num_workers`.

Predictions are appended to PRED.jsonl.partial as each batch finishes and the file is renamed
to PRED.jsonl at the end: an interrupted run leaves no PRED.jsonl that looks complete, and
rerunning the same command resumes after the last whole line without duplicates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pefomed.console import progress_bar
from pefomed.errors import UserError
from pefomed.io import dumps
from pefomed.models.generation import Generator
from pefomed.records import Prediction, Sample


def _done_ids(partial: Path) -> set[str]:
    """Ids already answered in an interrupted run; a torn last line is dropped."""
    done, good_bytes = set(), 0
    with open(partial, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                done.add(json.loads(raw)["id"])
            except (ValueError, KeyError):
                break
            good_bytes += len(raw)
    with open(partial, "r+b") as handle:
        handle.truncate(good_bytes)
    return done


def predict(samples: list[Sample], image_root: Path, recipe, bundle, out: str | Path,
            batch_size: int | None = None, max_new_tokens: int | None = None, with_references: bool = True,
            *, prompting=None, num_workers: int = 0) -> Path:
    """Answer `samples` (image paths relative to `image_root`) into `out` (PRED.jsonl).

    `prompting` (pefomed.infer.fewshot.Prompting) changes how they are asked; None is the recipe's
    zero-shot prompt. `prompt_settings` with the same arguments says what was asked.
    `num_workers` > 0 decodes images and encodes prompts in that many worker processes ahead of
    the model (pefomed.infer.batches); the file is the same either way."""
    from pefomed.instructions import instruction
    from pefomed.infer.batches import EncodedBatches, iterate, raise_if_failed
    from pefomed.infer.rank import Ranker, closed_candidates

    if not samples:
        raise UserError("nothing to predict")
    prompting, data, exemplars = resolve_prompting(samples, image_root, recipe, bundle, prompting)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    done = _done_ids(partial) if partial.exists() else set()
    todo = by_prompt_length([s for s in samples if s.id not in done], data, exemplars)
    batch_size = batch_size or recipe.infer.batch_size
    generate = make_generator(recipe, bundle, data, image_root, max_new_tokens, prompting)
    rank = Ranker(bundle.model, bundle.processor, data, image_root, batch_size=batch_size,
                  blind=prompting.blind, ablation=prompting.ablation) if prompting.closed_answer == "rank" else None
    n_answers = generate.num_return_sequences
    batches = EncodedBatches([todo[i:i + batch_size] for i in range(0, len(todo), batch_size)],
                             generate.collator, exemplars, closed_candidates if rank is not None else None)
    with open(partial, "a", encoding="utf-8") as handle, progress_bar() as bar:
        task = bar.add_task("generating", total=len(samples), completed=len(done), status="")
        for item in iterate(batches, num_workers):
            chunk = batches.chunks[item["index"]]
            answers = _answer(chunk, raise_if_failed(item), batches, generate, rank, n_answers)
            for sample, texts in zip(chunk, answers):
                row = Prediction(id=sample.id, images=sample.images, question=instruction(sample, data),
                                 prediction=texts[0], task=sample.task,
                                 predictions=list(texts) if n_answers > 1 else None)
                if prompting.ablation is not None:  # `images` stays the sample's own
                    row.shown_images = prompting.ablation.images_of(sample)
                if with_references:
                    row.reference, row.answer_type, row.meta = sample.answer, sample.answer_type, sample.meta
                handle.write(dumps(row.to_dict()) + "\n")
            handle.flush()
            bar.update(task, advance=len(chunk))
    _restore_input_order(partial, out, [s.id for s in samples])
    return out


def resolve_prompting(samples: list[Sample], image_root: Path, recipe, bundle, prompting):
    """(prompting, the data section it asks with, {sample id: exemplars}), checked."""
    from pefomed.infer.fewshot import Prompting

    # an ablation planned over these samples, unless the caller planned it over more (infer: all
    # samples, before a data-parallel run shards them)
    prompting = Prompting.of(prompting).with_ablation(samples)
    data = prompting.data_section(recipe.data)
    if prompting.template is not None and not any(s.task == "vqa" for s in samples):
        raise UserError("`template` sets the VQA instruction, but every sample here is a report request "
                        "(their prompt is data.report_prompt)")
    if prompting.shots:
        from pefomed.data.collate import check_few_shot

        check_few_shot(bundle.processor)  # before any exemplar is read
    return prompting, data, prompting.exemplars(samples, image_root, data)


def make_generator(recipe, bundle, data, image_root: Path, max_new_tokens: int | None, prompting) -> Generator:
    return Generator(bundle.model, bundle.processor, data, image_root,
                     max_new_tokens or recipe.infer.max_new_tokens, recipe.infer.num_beams,
                     blind=prompting.blind, sampling=recipe.infer, ablation=prompting.ablation)


def by_prompt_length(samples: list[Sample], data, exemplars: dict) -> list[Sample]:
    """Samples from the shortest prompt to the longest (a stable sort: input order among equals).
    Batches of similar prompt length waste less compute on padding; PRED.jsonl is put back in
    input order at the end (batched generation equals one-by-one, so grouping changes no answer)."""
    return sorted(samples, key=lambda s: _prompt_length(s, data, exemplars))


def _prompt_length(sample: Sample, data, exemplars: dict) -> tuple[int, int]:
    """A cheap proxy for the encoded prompt's length: images, then instruction characters."""
    from pefomed.instructions import instruction

    shots = exemplars.get(sample.id, [])
    text = len(instruction(sample, data)) + sum(len(instruction(e, data)) + len(e.answer) for e in shots)
    return (len(sample.images) + sum(len(e.images) for e in shots), text)


def _restore_input_order(partial: Path, out: Path, order: list[str]) -> None:
    """Write PRED.jsonl with its rows in the order of the input samples, atomically."""
    from pefomed.io import atomic_write

    position = {sample_id: i for i, sample_id in enumerate(order)}
    with open(partial, "rb") as handle:
        lines = [line for line in handle if line.endswith(b"\n")]
    lines.sort(key=lambda line: position.get(json.loads(line)["id"], len(position)))
    with atomic_write(out, "wb", encoding=None) as handle:
        handle.writelines(lines)
    os.remove(partial)


def _answer(chunk: list[Sample], item: dict, batches, generate, rank, n_answers: int) -> list[list[str]]:
    """Each sample's answers, best first: ranked candidates for the chunk's closed questions (with
    `rank`; the n most likely), generated sequences for the rest; `item` holds their encodings."""
    from pefomed.infer.rank import closed_candidates

    texts: dict[str, list[str]] = {}
    ranked, rest = batches.split(chunk)
    if ranked:
        candidates = [closed_candidates(s) for s in ranked]
        orders = rank.ranked(ranked, candidates, prompts=item["ranked"])
        texts.update({s.id: order[:n_answers] for s, order in zip(ranked, orders)})
    if rest:
        texts.update(zip((s.id for s in rest), generate.generate_encoded(item["generate"], rest)))
    return [texts[s.id] for s in chunk]
