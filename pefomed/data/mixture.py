"""Training on several DATA_DIRs at once (`data.mix`): which sample of which source fills each
slot of the run, as a pure function of (seed, micro-batch, rank, world).

How MiniGPT-4 / MiniGPT-v2 mix (and so PeFoMed's released stage 1, `sample_ratio` 60/60/20/60):
`MultiIterLoader` keeps one endless DataLoader per data set (each reshuffled by its sampler when it
runs out) and, for every micro-batch of every GPU, picks one data set with
`random.choices(weights=sample_ratio)` from that process's own Python RNG (seeded seed + rank). A
data set's share of the samples is ratio / sum of ratios in expectation, each micro-batch comes
from a single data set, and what a global batch holds depends on the number of GPUs.

pefomed draws the same expected shares, reproducibly and independently of the process count:

- A mixture epoch is L = (sum of the sources' training sizes) draws. Source i gets
  q_i = L * r_i / sum(r) of them, rounded by largest remainder so that sum q_i = L.
- The epoch's L slots are a seeded shuffle of the multiset {i repeated q_i times}: every slot comes
  from source i with probability q_i / L, and over a whole epoch the counts are exactly q_i.
- The slots are cut into global micro-batches of batch_size x processes, interleaved across
  ranks exactly like a single DATA_DIR's permutation (train_batches.first_slot); the incomplete
  last global batch of an epoch is dropped (its slots are skipped, as data.dir drops its tail).
- Each source is read as an endless stream: its own seeded permutation, then a fresh permutation
  for the next pass, and so on. The j-th slot of source i in mixture epoch e reads stream
  position e * q_i + j. A source with q_i > N_i (small, high ratio) is cycled, re-permuted on each
  pass; one with q_i < N_i is sub-sampled, and the next epoch continues where this one stopped,
  so every sample of a source is seen once before any is seen twice.
- Source 0 is read in data.dir's permutation (train_batches.epoch_permutation): a one-source
  mixture trains on exactly the batches of data.dir.

Each source keeps its own DATA_DIR: its samples are `SourcedSample`s (the sample, unchanged, plus
the source's name) and `SourceCollator` encodes each with a Collator of its own DATA_DIR, so image
paths resolve (and are confined) there. Sample ids stay as prepared (the instruction a template
pool picks is a hash of the id, the same in `pefomed infer`); logs name a sample `source:id`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pefomed.data.blank_image import BlankImagePadding
from pefomed.data.train_batches import EpochPlan, epoch_permutation, first_slot
from pefomed.errors import UserError
from pefomed.recipe import DataSection
from pefomed.records import Sample

# a source name is a log key (eval_log.jsonl, TensorBoard tags) and the prefix of `source:id`:
# no ':' (so the prefix is unambiguous), no '/' (a TensorBoard tag separator), no spaces
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Source:
    """One training DATA_DIR: its name in logs, its folder and its sampling weight."""

    name: str
    dir: Path
    ratio: float


@dataclass
class SourcedSample(Sample):
    """A sample as prepared, plus the name of the data.mix source it came from."""

    source: str = ""


def sourced(samples: list[Sample], source: str) -> list[SourcedSample]:
    """The samples of one source, tagged with its name (otherwise unchanged)."""
    return [SourcedSample(**vars(s), source=source) for s in samples]


def sample_key(sample: Sample) -> str:
    """How logs name a training sample: `source:id` in a mixture (ids of two DATA_DIRs may be
    equal), the id alone otherwise."""
    source = getattr(sample, "source", "")
    return f"{source}:{sample.id}" if source else sample.id


def mix_sources(data: DataSection) -> list[Source]:
    """data.mix checked before any process group or model exists: every entry a prepared
    DATA_DIR, names usable in logs and unique, no DATA_DIR twice. Each mistake names its entry."""
    if not data.mix:
        raise UserError("data.mix is empty: list the DATA_DIRs to mix ({dir, ratio} entries), or use data.dir")
    sources: list[Source] = []
    for i, entry in enumerate(data.mix):
        folder = Path(entry.dir)
        if not (folder / "manifest.json").is_file():
            what = "no such folder" if not folder.exists() else "no manifest.json"
            raise UserError(f"data.mix[{i}].dir: {folder} is not a prepared DATA_DIR ({what})",
                            hint="write it with `pefomed prepare` first")
        name = entry.name if entry.name is not None else folder.resolve().name
        if not SOURCE_NAME.fullmatch(name):
            said = f"data.mix[{i}].name {name!r}" if entry.name is not None else \
                f"data.mix[{i}]: the folder name {name!r}"
            raise UserError(f"{said} is not a usable source name (letters, digits, '.', '-', '_'; at most 64)",
                            hint=f"set data.mix[{i}].name")
        for j, other in enumerate(sources):
            if other.name == name:
                raise UserError(f"data.mix[{i}].name: {name!r} is also the name of data.mix[{j}]",
                                hint=f"give each source its own name (data.mix[{i}].name)")
            if other.dir.resolve() == folder.resolve():
                raise UserError(f"data.mix[{i}].dir: {folder} is the same DATA_DIR as data.mix[{j}].dir",
                                hint="list it once, with the two ratios added")
        sources.append(Source(name=name, dir=folder, ratio=float(entry.ratio)))
    return sources


def quotas(sizes: list[int], ratios: list[float]) -> list[int]:
    """Draws of each source in one mixture epoch of sum(sizes) draws: proportional to the ratios,
    rounded by largest remainder (ties go to the earlier source) so they add up exactly."""
    total, weight = sum(sizes), sum(ratios)
    exact = [total * r / weight for r in ratios]
    out = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(out)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out


def _derived_seed(*parts: object) -> int:
    """A 63-bit seed for torch.Generator from the parts, so that different (seed, source, pass)
    never share a random stream."""
    digest = hashlib.sha256(repr(("pefomed.mixture", *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@functools.lru_cache(maxsize=4)
def _slot_sources(seed: int, quota: tuple[int, ...], epoch: int) -> np.ndarray:
    """Source index of every slot of mixture epoch `epoch`: a seeded shuffle of the multiset
    {i repeated quota[i] times}. Cached: a pure function, recomputed only when an epoch changes."""
    import torch

    base = np.repeat(np.arange(len(quota), dtype=np.int32), quota)
    if len(quota) > 1:
        order = torch.randperm(len(base), generator=torch.Generator().manual_seed(_derived_seed("slots", seed, epoch)))
        base = base[order.numpy()]
    base.flags.writeable = False
    return base


@functools.lru_cache(maxsize=64)
def _source_order(seed: int, source: int, n: int, sweep: int) -> np.ndarray:
    """Source `source`'s order on its pass number `sweep` over its `n` samples (source 0: exactly
    data.dir's permutation of that epoch)."""
    import torch

    if source == 0:
        order = epoch_permutation(n, sweep, seed)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(_derived_seed("source", seed, source, sweep)))
    out = order.numpy()
    out.flags.writeable = False
    return out


def mixture_picks(sizes: list[int], quota: list[int], seed: int, epoch: int, start: int,
                  count: int) -> list[tuple[int, int]]:
    """(source, sample index) of slots start..start+count-1 of mixture epoch `epoch`."""
    slots = _slot_sources(seed, tuple(quota), epoch)
    # how many slots of each source come before `start`: where each source's stream stands
    seen = [int(c) for c in np.bincount(slots[:start], minlength=len(quota))]
    picks = []
    for source in slots[start:start + count].tolist():
        position = epoch * quota[source] + seen[source]
        seen[source] += 1
        sweep, offset = divmod(position, sizes[source])
        picks.append((source, int(_source_order(seed, source, sizes[source], sweep)[offset])))
    return picks


class SourceCollator:
    """The Collator interface over one Collator per source: a `SourcedSample` is encoded by its own
    source's Collator (image paths resolved against, and confined to, that DATA_DIR). Padding
    (`__call__`), answers and everything else do not depend on the DATA_DIR and come from the
    first source's Collator."""

    def __init__(self, collators: dict[str, object]):
        self.by_source = collators
        self.first = next(iter(collators.values()))

    def of(self, sample: Sample):
        source = getattr(sample, "source", "")
        if source not in self.by_source:
            # a plain Sample has no DATA_DIR here: resolving its paths against some source would be a guess
            raise ValueError(f"sample {sample.id!r} names no data.mix source (got {source!r})")
        return self.by_source[source]

    def encode(self, sample: Sample, shots=(), **transform):
        return self.of(sample).encode(sample, shots, **transform)

    def encode_prompt(self, sample: Sample, shots=(), **transform):
        return self.of(sample).encode_prompt(sample, shots, **transform)

    def encode_with_images(self, sample: Sample, images: list, shots=()):
        # images already loaded (the blank-image padding): no path to resolve
        return self.first.encode_with_images(sample, images, shots)

    def __call__(self, encodings: list[dict]) -> dict:
        return self.first(encodings)

    def __getattr__(self, name: str):
        if name in ("first", "by_source", "image_path", "data_dir", "_images") or name.startswith("__"):
            raise AttributeError(f"SourceCollator.{name}: depends on the source; use .of(sample).{name}")
        return getattr(self.first, name)  # processor, data, train, layout, pad_id, append_answer, ...


class MixtureBatches:
    """Micro-batch m of this process in a mixture: (`source:id` keys, the collated batch).
    Map-style and free of hidden state (the caches hold pure functions' values), like
    train_batches.TrainingBatches, so DataLoader workers and resume see the same batches."""

    def __init__(self, sources: list[Source], samples: list[list[SourcedSample]], collators: list, plan: EpochPlan,
                 quota: list[int], batch_size: int, seed: int, rank: int, world: int, pad_blank_image: bool):
        self.sources, self.plan, self.quota = sources, plan, list(quota)
        self.by_source = samples  # per source, `sourced`
        self.sizes = [len(group) for group in self.by_source]
        self.samples = [s for group in self.by_source for s in group]  # every sample (the length pre-pass)
        self.collator = SourceCollator({src.name: c for src, c in zip(sources, collators)})
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.pad_blank_image = BlankImagePadding(self.collator) if pad_blank_image else None

    def epoch_of(self, micro: int) -> tuple[int, int]:
        """(mixture epoch, index within it) of micro-batch `micro`."""
        return divmod(micro, self.plan.micro_per_epoch)

    def picks(self, micro: int) -> list[tuple[int, int]]:
        """(source, sample index) of each sample of micro-batch `micro` of this process."""
        epoch, index = self.epoch_of(micro)
        return mixture_picks(self.sizes, self.quota, self.seed, epoch,
                             first_slot(index, self.batch_size, self.rank, self.world), self.batch_size)

    def __getitem__(self, micro: int) -> tuple[list[str], dict]:
        chosen = [self.by_source[source][k] for source, k in self.picks(micro)]
        epoch, _ = self.epoch_of(micro)  # data.train_transform draws anew each epoch, seeded
        encodings = [self.collator.encode(sample, epoch=epoch, seed=self.seed) for sample in chosen]
        if self.pad_blank_image is not None:
            encodings = self.pad_blank_image(encodings)
        return [sample_key(sample) for sample in chosen], self.collator(encodings)
