"""The training data as one object: which samples make micro-batch m of this process, encoded,
padded and collated. The loop only asks for `batches[m]`.

- Order: a seeded permutation per epoch; consecutive slices are interleaved across ranks, so the
  global batch equals a one-process batch of batch_size x world samples, and micro-batch m is the
  same whenever it is asked for (a resumed run sees exactly the batches an uninterrupted one
  would). An incomplete last global batch of an epoch is dropped.
- Epoch arithmetic: micro-batches per epoch, optimizer steps for the run.
- Mixed image/text batches: a text-only micro-batch gets a fully masked blank-image sample
  (pefomed.data.blank_image) when the model has a vision tower.
- Image keys (train.feature_cache): `ImageKeyed` adds to each batch a content key per image (the
  sha256 of its pixels) and what the feature cache already stores for it.

Map-style (`len`, `__getitem__` by micro-batch index) and free of hidden state, so a
torch DataLoader with worker processes can build batches ahead of the model without changing
which samples a step sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pefomed.data.blank_image import BlankImagePadding
from pefomed.errors import UserError
from pefomed.records import Sample


def micro_batch_indices(n_samples: int, epoch: int, index: int, seed: int, batch: int, rank: int, world: int) -> list[int]:
    """Sample indices of micro-batch `index` of `epoch` for `rank`: a seeded permutation per epoch,
    consecutive slices interleaved across ranks (so the global batch equals a one-process batch of
    batch * world samples)."""
    order = epoch_permutation(n_samples, epoch, seed)
    start = first_slot(index, batch, rank, world)
    return order[start:start + batch].tolist()


def epoch_permutation(n_samples: int, epoch: int, seed: int):
    """The seeded order of `n_samples` samples in `epoch` (a torch tensor); a mixture's first
    source is read in exactly this order (pefomed.data.mixture), so a one-source mixture is data.dir."""
    import torch

    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n_samples, generator=generator)


def first_slot(index: int, batch: int, rank: int, world: int) -> int:
    """Where micro-batch `index` of `rank` starts in its epoch's order: consecutive slices of
    `batch` interleaved across ranks, so global micro-batch `index` is slots
    [index * batch * world, (index + 1) * batch * world) however it is split over processes."""
    return (index * world + rank) * batch


@dataclass
class EpochPlan:
    """How long a run is, fixed before its first step."""

    micro_per_epoch: int
    total_steps: int

    @classmethod
    def make(cls, n_samples: int, batch_size: int, world: int, grad_accum: int, epochs: float,
             max_steps: int | None, where: str) -> "EpochPlan":
        micro_per_epoch = n_samples // (batch_size * world)
        if micro_per_epoch < grad_accum:
            raise UserError(f"{where} has {n_samples} samples, fewer than one global batch ({batch_size} x {world} "
                            f"processes x {grad_accum} accumulation)")
        total = max_steps or max(1, math.ceil(epochs * (micro_per_epoch // grad_accum)))
        return cls(micro_per_epoch, total)


class TrainingBatches:
    """Micro-batch m of this process: (sample ids, the collated batch)."""

    def __init__(self, samples: list[Sample], collator, plan: EpochPlan, batch_size: int, seed: int,
                 rank: int, world: int, pad_blank_image: bool):
        self.samples, self.collator, self.plan = samples, collator, plan
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.pad_blank_image = BlankImagePadding(collator) if pad_blank_image else None

    def epoch_of(self, micro: int) -> tuple[int, int]:
        """(epoch, index within the epoch) of micro-batch `micro`."""
        return divmod(micro, self.plan.micro_per_epoch)

    def indices(self, micro: int) -> list[int]:
        epoch, index = self.epoch_of(micro)
        return micro_batch_indices(len(self.samples), epoch, index, self.seed, self.batch_size, self.rank, self.world)

    def __getitem__(self, micro: int) -> tuple[list[str], dict]:
        chosen = [self.samples[i] for i in self.indices(micro)]
        epoch, _ = self.epoch_of(micro)  # data.train_transform draws anew each epoch, seeded
        encodings = [self.collator.encode(sample, epoch=epoch, seed=self.seed) for sample in chosen]
        if self.pad_blank_image is not None:
            encodings = self.pad_blank_image(encodings)
        return [sample.id for sample in chosen], self.collator(encodings)


IMAGE_KEYS = "image_keys"  # a training batch's per-image keys (train.feature_cache); popped before forward
STORED_FEATURES = "stored_features"  # what the cache already held for them, read ahead; popped too


def pixel_keys(pixel_values) -> list[str]:
    """One key per image of a batch: the sha256 of exactly the pixels the vision tower receives
    (shape, dtype and bytes of `pixel_values[i]`). The image file, the processor's resize, crop and
    normalisation, and the transform are all in the pixels, so equal keys mean equal tower input."""
    import hashlib

    import torch

    keys = []
    for image in pixel_values:
        image = image.contiguous()
        digest = hashlib.sha256(f"{tuple(image.shape)}|{image.dtype}|".encode())
        digest.update(memoryview(image.reshape(-1).view(torch.uint8).numpy()))
        keys.append(digest.hexdigest())
    return keys


class ImageKeyed:
    """Training batches (TrainingBatches, or a mixture's) whose batches also say which images they
    hold: batch[IMAGE_KEYS] lists `pixel_keys` of its pixel_values, in order, and with `read`
    (key -> stored tensors or None) batch[STORED_FEATURES] what is already stored for each. Map-style
    like the batches it wraps, so DataLoader workers hash and read ahead of the model."""

    def __init__(self, batches, read=None):
        self.batches, self.read = batches, read

    def __getitem__(self, micro: int) -> tuple[list[str], dict]:
        ids, batch = self.batches[micro]
        if "pixel_values" in batch:
            keys = pixel_keys(batch["pixel_values"])
            batch[IMAGE_KEYS] = keys
            if self.read is not None:
                batch[STORED_FEATURES] = [self.read(key) for key in keys]
        return ids, batch
