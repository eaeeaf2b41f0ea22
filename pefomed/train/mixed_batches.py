"""Batches without images, made safe for data-parallel training.

When one process's micro-batch has no image (text-only samples), its forward pass skips the
vision tower and projector. Under ZeRO-3 the processes then disagree on the order in which
parameters are gathered and wait for each other forever (a known hang in fine-tuning tools);
under ZeRO-2 the projector's gradient hooks never fire on that process. Running the image path
separately does not help: the order of the collective operations must match exactly.

The cure: a micro-batch with no image gets one extra sample carrying a blank image whose labels
are all masked. Every process then runs the same modules in the same order, and the loss (a
mean over unmasked tokens) is exactly what it would have been without the extra sample.
"""

from __future__ import annotations

from PIL import Image

from pefomed.data.collate import IGNORE_INDEX
from pefomed.records import Sample

_BLANK = Sample(id="blank-image", task="vqa", images=[], question="", answer="")


def has_image(encoding: dict) -> bool:
    return "pixel_values" in encoding


def with_blank_image(collator, encodings: list[dict]) -> list[dict]:
    """`encodings`, plus a fully masked blank-image sample when none of them has an image."""
    if any(has_image(e) for e in encodings):
        return encodings
    blank = collator.encode_with_images(_BLANK, [Image.new("RGB", (32, 32))])
    blank["labels"] = blank["labels"].clone().fill_(IGNORE_INDEX)
    return [*encodings, blank]
