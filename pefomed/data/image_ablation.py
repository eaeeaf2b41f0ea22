"""Image ablations: the same questions shown a content-free image, or another sample's image.

Beside the blind control (no image at all, pefomed.data.collate), these keep the image slot and
its token count and change only what the pixels say (docs/prompting.md):

- blank: each image becomes a constant (black: all zeros) image of the same size and mode.
- shuffled: each sample is shown the image(s) of another sample, by a seeded derangement over the
  distinct image sets of the samples, so no sample keeps its own image and the questions that
  share one image all see the same other one.
- mismatched: each sample is shown the image(s) of a sample of another organ/modality group (its
  prepared meta `organ` and `modality`), drawn with a seed.

`plan_ablation` decides who is shown what from the whole list of samples, so every process of a
data-parallel run (which each answer a shard) shows the same images; the mapping's sha256 goes
into PRED.settings.json and each PRED.jsonl row names the images it showed (`shown_images`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pefomed.errors import UserError
from pefomed.options.infer import IMAGE_ABLATIONS as ABLATIONS  # declared with the infer option
from pefomed.records import Sample

# the meta fields the prepared formats fill (VQA-RAD: organ; SLAKE: organ and modality;
# PathVQA: modality), which make a sample's group for `mismatched`
GROUP_FIELDS = ("modality", "organ")
_TRIES = 200  # shuffled: derangements drawn before giving up on image sets that all overlap


@dataclass(frozen=True)
class ImageAblation:
    """One inference's ablation: `kind`, `seed`, and `shown`: {sample id: the image paths shown}
    (relative to the samples' image root, as `Sample.images`). blank shows each sample its own
    paths, each as a constant image."""

    kind: str
    seed: int
    shown: Mapping[str, tuple[str, ...]]

    def images_of(self, sample: Sample) -> list[str]:
        """The paths shown with `sample` (its own for a sample the plan did not cover)."""
        return list(self.shown.get(sample.id, sample.images))

    def sha256(self) -> str:
        """A digest of the sample id -> shown images mapping (independent of the samples' order)."""
        canonical = json.dumps({sid: list(paths) for sid, paths in sorted(self.shown.items())},
                               ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def settings(self) -> dict:
        return {"image_ablation": self.kind, "image_ablation_seed": self.seed,
                "image_ablation_sha256": self.sha256()}


def blank_like(image):
    """A constant image of `image`'s size and mode: zeros in every band (black, and transparent
    where there is alpha), so the model gets the same slot and token count and no content."""
    from PIL import Image

    return Image.new(image.mode, image.size)


def check_kind(kind: str | None) -> None:
    if kind is not None and kind not in ABLATIONS:
        raise UserError(f"`image_ablation` must be one of {', '.join(ABLATIONS)}, got {kind!r}")


def plan_ablation(samples: Sequence[Sample], kind: str, seed: int) -> ImageAblation:
    """Who is shown what under ablation `kind`, from the whole list of `samples` and `seed` alone."""
    check_kind(kind)
    if kind == "blank":
        return ImageAblation(kind, seed, {s.id: tuple(s.images) for s in samples})
    sets = sorted({tuple(s.images) for s in samples if s.images})
    if kind == "shuffled":
        target = _derangement(sets, seed)
    else:
        target = _mismatch(samples, sets, seed)
    return ImageAblation(kind, seed, {s.id: target.get(tuple(s.images), tuple(s.images)) for s in samples})


def _derangement(sets: list[tuple[str, ...]], seed: int) -> dict[tuple, tuple]:
    """{image set: the set shown instead}: a seeded random cycle through all sets (a derangement:
    none maps to itself), redrawn while a set would be shown one that shares an image with it."""
    if len(sets) < 2:
        raise UserError(f"image_ablation shuffled needs at least two different images among the samples "
                        f"(found {len(sets)})", keys=["image_ablation"],
                        hint="use blank, or answer more samples")
    rng = random.Random(f"shuffled:{seed}")
    for _ in range(_TRIES):
        order = list(sets)
        rng.shuffle(order)
        # each set is shown the next one of the shuffled cycle: never itself
        target = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
        if all(not set(a) & set(b) for a, b in target.items()):
            return target
    raise UserError("image_ablation shuffled: the samples' image sets overlap so much that no seeded "
                    "derangement shows every sample only images of other samples", keys=["image_ablation"])


def group_of(sample: Sample) -> tuple:
    """(field, value) pairs of the sample's organ/modality meta that are set; () when none is."""
    meta = sample.meta or {}
    return tuple((key, str(meta[key])) for key in GROUP_FIELDS
                 if isinstance(meta.get(key), (str, int)) and not isinstance(meta.get(key), bool)
                 and str(meta[key]).strip())


def _mismatch(samples: Sequence[Sample], sets: list[tuple[str, ...]], seed: int) -> dict[tuple, tuple]:
    """{image set: a set of another group}, drawn by a hash of (seed, the set): the choice for one
    image does not depend on which other samples are answered beside it, only on the candidates."""
    groups: dict[tuple, set] = {}
    for sample in samples:
        if not sample.images:
            continue
        group = group_of(sample)
        if not group:
            raise UserError(f"image_ablation mismatched: sample {sample.id} has no organ or modality in its meta, "
                            "so no group to mismatch it with", keys=["image_ablation"],
                            hint="use shuffled (any other sample's image)")
        groups.setdefault(tuple(sample.images), set()).add(group)
    distinct = {g for gs in groups.values() for g in gs}
    if len(distinct) < 2:
        only = ", ".join(f"{k} {v}" for k, v in next(iter(distinct), ())) or "none"
        raise UserError(f"image_ablation mismatched: every sample is in one organ/modality group ({only}), so no "
                        "image of another group exists", keys=["image_ablation"],
                        hint="use shuffled (any other sample's image)")
    target = {}
    for own in sets:
        mine = groups[own]
        # another group: none of the groups of the questions on this image, and no shared image
        candidates = [other for other in sets if not groups[other] & mine and not set(other) & set(own)]
        if not candidates:
            raise UserError(f"image_ablation mismatched: image {own[0]} has no image of another organ/modality "
                            "group to be swapped with", keys=["image_ablation"], hint="use shuffled")
        digest = hashlib.sha256(json.dumps([seed, list(own)]).encode()).digest()
        target[own] = candidates[int.from_bytes(digest[:8], "big") % len(candidates)]
    return target
