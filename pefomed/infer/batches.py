"""Inference batches prepared ahead of the model: images decoded, prompts encoded and padded.

`EncodedBatches` is a map-style dataset over the batches of one inference (item i is batch i,
computed from the samples alone, with no hidden state), so `pefomed infer --workers N` can build
them in N DataLoader worker processes while the model generates, and item i is the same bytes
whichever process built it: PRED.jsonl is the same with and without workers (tested).

A user mistake found while encoding (an unreadable image, a prompt over data.max_length) is
returned as data, not raised in the worker: the DataLoader would re-raise it with the worker's
traceback pasted into the message. The main process raises it again with its own message and
hint, when it reaches that batch, exactly where a run without workers raises it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pefomed.errors import UserError
from pefomed.records import Sample


class EncodedBatches:
    """Item i: {"index": i, "ranked": [prompt encodings of the closed questions to rank],
    "generate": the left-padded batch of the others (or None), "error": None or (message, hint)}.

    `collator` is the generation collator (pefomed.data.collate.Collator, train=False);
    `candidates(sample)` says which samples are ranked (None: none are)."""

    def __init__(self, chunks: Sequence[Sequence[Sample]], collator, exemplars: dict,
                 candidates: Callable[[Sample], list[str] | None] | None = None):
        self.chunks, self.collator, self.exemplars, self.candidates = chunks, collator, exemplars, candidates

    def __len__(self) -> int:
        return len(self.chunks)

    def split(self, chunk: Sequence[Sample]) -> tuple[list[Sample], list[Sample]]:
        """(samples ranked, samples generated) of a chunk, each in chunk order."""
        ranked = [s for s in chunk if self.candidates is not None and self.candidates(s) is not None]
        chosen = {s.id for s in ranked}
        return ranked, [s for s in chunk if s.id not in chosen]

    def __getitem__(self, index: int) -> dict:
        ranked, rest = self.split(self.chunks[index])
        shots = lambda s: self.exemplars.get(s.id, [])  # noqa: E731
        try:
            prompts = [self.collator.encode_prompt(s, shots(s)) for s in ranked]
            batch = self.collator([self.collator.encode(s, shots(s)) for s in rest]) if rest else None
        except UserError as err:
            return {"index": index, "ranked": [], "generate": None, "error": (err.args[0], err.hint)}
        return {"index": index, "ranked": prompts, "generate": batch, "error": None}


def raise_if_failed(item: dict) -> dict:
    """The item, or the UserError its worker found (same message and hint as without workers)."""
    if item["error"] is not None:
        message, hint = item["error"]
        raise UserError(message, hint=hint)
    return item


def iterate(dataset, num_workers: int, prefetch: int = 2):
    """Items 0..len-1 in order: built in this process (num_workers 0) or by `num_workers` forked
    DataLoader workers, `prefetch` items each ahead of the consumer (into pinned memory on CUDA)."""
    if num_workers == 0:
        return (dataset[i] for i in range(len(dataset)))
    import torch
    from torch.utils.data import DataLoader

    # the tokenizer's own thread pool must not be forked mid-use (it would deadlock or warn)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # fork: the workers inherit the processor (and the model's pages, copy-on-write, never touched);
    # nothing is pickled on the way in. batch_size=None hands each item over as it is.
    # its own generator, as training's loader: starting the workers leaves the global RNG alone
    return iter(DataLoader(dataset, batch_size=None, num_workers=num_workers, prefetch_factor=prefetch,
                           pin_memory=torch.cuda.is_available(), multiprocessing_context="fork",
                           generator=torch.Generator().manual_seed(0)))


class _ImageCheck:
    """Item i: None when every image of sample i decodes (within the pixel limit), else why not."""

    def __init__(self, samples: Sequence[Sample], root):
        self.samples, self.root = samples, root

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> str | None:
        from pefomed.data.images import load_image

        try:
            for rel in self.samples[index].images:
                load_image(self.root / rel)
        except UserError as err:
            return str(err)
        return None


def image_failures(samples: Sequence[Sample], root, num_workers: int = 0) -> list[str | None]:
    """For each sample, None or the reason one of its images does not open (`--skip-bad`), the
    images decoded in `num_workers` worker processes (0: here); the same reasons either way."""
    return list(iterate(_ImageCheck(samples, root), num_workers))
