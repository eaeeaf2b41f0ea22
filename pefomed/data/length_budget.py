"""The token budget of a training split, measured before step 1 (`train.length_prepass`).

Every training sample is encoded once, as the loop would (chat template, processor, image
tokens), and its prompt and answer lengths are recorded. Two things come out of it:

- A sample whose prompt alone (image tokens included) is longer than `data.max_length` is an
  error naming it now, with every other such sample counted, instead of a crash when the loop
  reaches it hours into the run. Answers that do not fit are cut from their end by the collator;
  the pre-pass says how many will be.
- The distribution (min, median, 95th percentile, max of prompt, image, answer and total
  tokens), which is what a user needs to pick `data.max_length` and a batch size.

The encoding is the expensive part (image decoding and the processor), so it runs in DataLoader
worker processes when `train.num_workers` > 0, and the result is kept in RUN_DIR keyed by
everything that decides the lengths: a resumed run, or a second process, reads it instead of
measuring again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import math
import os
from dataclasses import dataclass
from pathlib import Path

from pefomed.data.collate import PromptTooLong
from pefomed.data.mixture import sample_key
from pefomed.errors import UserError
from pefomed.io import atomic_write

CHUNK = 32  # samples per worker task: large enough that the per-task overhead is small
NAMED = 5  # over-long prompts named in the error; the rest are counted


@dataclass(frozen=True)
class Lengths:
    """Tokens of one training sample: prompt (images included), of which image, and answer + end token."""

    id: str
    prompt: int
    image: int | None
    answer: int


def image_token_id(processor) -> int | None:
    """The id of the token a family repeats for each image patch, when its processor says."""
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    token = getattr(processor, "image_token", None)
    if isinstance(token, str):
        found = processor.tokenizer.convert_tokens_to_ids(token)
        if isinstance(found, int) and found != processor.tokenizer.unk_token_id:
            return found
    return None


class _Measure:
    """Map-style: item k = the lengths of samples [k*CHUNK, (k+1)*CHUNK), or the error of an
    over-long prompt in their place (a worker cannot raise without ending the whole pass)."""

    def __init__(self, samples, collator):
        self.samples, self.collator = samples, collator
        self.image_id = image_token_id(collator.processor)

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / CHUNK)

    def __getitem__(self, k: int) -> list[Lengths | tuple[str, str]]:
        out: list[Lengths | tuple[str, str]] = []
        for sample in self.samples[k * CHUNK:(k + 1) * CHUNK]:
            try:
                enc = self.collator.encode_prompt(sample)
            except PromptTooLong as err:
                name = sample_key(sample)  # source:id in a mixture, where ids of two DATA_DIRs may be equal
                out.append((name, err.args[0].replace(f"sample {sample.id}:", f"sample {name}:", 1)))
                continue
            ids = enc["input_ids"]
            images = int((ids == self.image_id).sum()) if self.image_id is not None else None
            # the answer exactly as the collator appends it (separator and end token), uncut
            whole = self.collator.append_answer(enc, sample.answer, truncate=False)["input_ids"]
            out.append(Lengths(sample_key(sample), len(ids), images, len(whole) - len(ids)))
        return out


def _measure(samples, collator, num_workers: int) -> tuple[list[Lengths], list[tuple[str, str]]]:
    measure = _Measure(samples, collator)
    if num_workers == 0:
        chunks = (measure[k] for k in range(len(measure)))
    else:
        import torch
        from torch.utils.data import DataLoader

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as the training loader: no forked tokenizer pool
        # its own generator: the pass must not move the global RNG that training draws from
        chunks = DataLoader(measure, batch_size=None, num_workers=num_workers, multiprocessing_context="fork",
                            generator=torch.Generator().manual_seed(0))
    lengths, too_long = [], []
    for chunk in chunks:
        for item in chunk:
            (too_long if isinstance(item, tuple) else lengths).append(item)
    return lengths, too_long


def _stats(values: list[int]) -> dict[str, float]:
    import numpy as np

    if not values:
        return {}
    arr = np.asarray(values)
    return {"min": int(arr.min()), "median": float(np.median(arr)), "p95": float(np.percentile(arr, 95)),
            "max": int(arr.max()), "mean": round(float(arr.mean()), 2)}


def cache_key(*parts: object) -> str:
    """sha256 of everything that decides a sample's length (split contents, model, data section)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def summarise(lengths: list[Lengths], too_long: list[tuple[str, str]], max_length: int, where: str) -> dict:
    totals = [x.prompt + x.answer for x in lengths]
    return {
        "samples": len(lengths) + len(too_long), "where": where, "max_length": max_length,
        "prompt_tokens": _stats([x.prompt for x in lengths]),
        "image_tokens": _stats([x.image for x in lengths if x.image is not None]),
        "answer_tokens": _stats([x.answer for x in lengths]),
        "total_tokens": _stats(totals),
        "answers_cut": sum(total > max_length for total in totals),
        "too_long": [{"id": sid, "message": msg} for sid, msg in too_long],
    }


def check(summary: dict) -> None:
    """One UserError naming the first over-long prompts (and counting all of them)."""
    too_long = summary["too_long"]
    if not too_long:
        return
    named = "; ".join(entry["message"] for entry in too_long[:NAMED])
    more = f" (and {len(too_long) - NAMED} more)" if len(too_long) > NAMED else ""
    raise UserError(f"{summary['where']}: {len(too_long)} of {summary['samples']} samples have a prompt longer than "
                    f"data.max_length={summary['max_length']}{more}: {named}",
                    hint="raise data.max_length, or shorten those prompts; found before step 1 by the length pre-pass")


def _digest(key: str, summary: dict) -> str:
    """sha256 of the key and the summary as canonical JSON: what a reader checks before trusting it."""
    return hashlib.sha256(json.dumps({"key": key, "summary": summary}, sort_keys=True).encode()).hexdigest()


def length_budget(samples, collator, max_length: int, num_workers: int, cache: Path, key: str, where: str) -> dict:
    """The split's token budget: read from `cache` when its key matches, else measured and written
    there. Raises the over-long-prompt error (after writing the summary, so other processes and a
    rerun see the same verdict)."""
    if cache.is_file():
        try:
            stored = json.loads(cache.read_text())
        except (OSError, ValueError):
            stored = None
        if isinstance(stored, dict) and stored.get("key") == key:
            summary = stored.get("summary")
            if isinstance(summary, dict) and stored.get("sha256") == _digest(key, summary):
                check(summary)
                return summary
            # edited after it was written (or written without a digest): a summary whose too_long
            # list was emptied would let over-long prompts through, so it is measured again
            sys.stderr.write(f"warning: {cache}: its content does not match its sha256; measuring the split again\n")
    lengths, too_long = _measure(samples, collator, num_workers)
    summary = summarise(lengths, too_long, max_length, where)
    with atomic_write(cache) as handle:
        json.dump({"key": key, "summary": summary, "sha256": _digest(key, summary)}, handle, indent=1)
    check(summary)
    return summary


def describe(summary: dict) -> str:
    """One line for the console: the distribution a user picks max_length and batch size from."""
    def span(name: str) -> str:
        s = summary[name]
        return f"{s['min']}/{s['median']:g}/{s['p95']:g}/{s['max']}" if s else "-"

    line = (f"token budget of {summary['samples']} training samples (min/median/p95/max): prompt {span('prompt_tokens')}"
            f", of which image {span('image_tokens')}, answer {span('answer_tokens')}, total {span('total_tokens')}")
    if summary["answers_cut"]:
        line += (f"; {summary['answers_cut']} answers will be cut to fit data.max_length={summary['max_length']}")
    return line
