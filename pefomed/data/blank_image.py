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


class BlankImagePadding:
    """Adds a fully masked blank-image sample to a micro-batch that has no image. The blank
    sample is encoded once per run, not at every text-only step."""

    def __init__(self, collator):
        self.collator = collator
        self._blank: dict | None = None

    def __call__(self, encodings: list[dict]) -> list[dict]:
        if any(has_image(e) for e in encodings):
            return encodings
        if self._blank is None:
            blank = self.collator.encode_with_images(_BLANK, [Image.new("RGB", (32, 32))])
            blank["labels"] = blank["labels"].clone().fill_(IGNORE_INDEX)
            self._blank = blank
        return [*encodings, self._blank]
