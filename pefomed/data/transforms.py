"""Image transforms applied before the family's processor: `data.train_transform` and
`data.eval_transform`.

The default is none at all (`resize` / `deterministic`): the processor's own resize and
normalisation, in training and inference alike. `random_resized_crop` is MiniGPT-v2 / PeFoMed's
training transform, `blip2_image_train` in the released code (processors/blip_processors.py,
Blip2ImageTrainProcessor): torchvision's `RandomResizedCrop(image_size, scale=(0.5, 1.0),
interpolation=BICUBIC)` with its default aspect-ratio range (3/4, 4/3), then
`RandomHorizontalFlip()` (p = 0.5), then ToTensor + Normalize (the processor's part here).

Every random draw comes from a generator seeded by a hash of what identifies the draw, never from
a global RNG: training images by (train.seed, epoch, source, sample id, image index), so
DataLoader workers, any number of processes and a resumed run see exactly the pixels an
uninterrupted one-process run does, and each epoch sees a new crop; `eval_transform: released`
images by (source, sample id, image index) alone, so evaluation during training and
`pefomed infer` crop a sample identically, run after run.

The crop parameters follow torchvision's `RandomResizedCrop.get_params` step for step (ten tries
of an area fraction uniform in `scale` and a log-uniform aspect ratio, a uniform position; else a
centre crop clamped to the ratio range); the crop and bicubic resize are PIL's `crop` and `resize`,
which is what torchvision runs on a PIL image (tests/data/test_transforms.py checks both against
torchvision).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from PIL import Image

# blip2_image_train's defaults (min_scale 0.5, max_scale 1.0; no PeFoMed config overrides them),
# torchvision's default ratio range, RandomHorizontalFlip's default probability
RELEASED_SCALE = (0.5, 1.0)
RELEASED_RATIO = (3.0 / 4.0, 4.0 / 3.0)
RELEASED_FLIP_P = 0.5
RELEASED_INTERPOLATION = "bicubic"

TRAIN_TRANSFORMS = ("resize", "random_resized_crop")
EVAL_TRANSFORMS = ("deterministic", "released")


@dataclass(frozen=True)
class CropParams:
    """A crop box in the source image (top, left, height, width) and whether to mirror it."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def draw_rng(*key) -> random.Random:
    """A generator seeded by a sha256 of `key`: the same key gives the same draws on any machine,
    in any process, in any order of calls."""
    digest = hashlib.sha256(repr(("pefomed.transforms", *key)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def crop_params(width: int, height: int, rng: random.Random, scale: tuple[float, float] = RELEASED_SCALE,
                ratio: tuple[float, float] = RELEASED_RATIO, flip_p: float = RELEASED_FLIP_P) -> CropParams:
    """torchvision RandomResizedCrop.get_params's algorithm on `rng`, then the flip coin."""
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    box = None
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            box = (rng.randint(0, height - h), rng.randint(0, width - w), h, w)
            break
    if box is None:  # no try fitted (a very elongated image): the centre crop, ratio clamped
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            h, w = height, int(round(height * max(ratio)))
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    return CropParams(*box, flip=rng.random() < flip_p)


def apply_crop(image: Image.Image, params: CropParams, size: tuple[int, int]) -> Image.Image:
    """The crop resized to `size` (width, height) with bicubic interpolation, mirrored if drawn."""
    box = (params.left, params.top, params.left + params.width, params.top + params.height)
    out = image.crop(box).resize(size, Image.Resampling.BICUBIC)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if params.flip else out


def processor_input_size(processor, edge_only_too: bool = False) -> tuple[int, int] | None:
    """(width, height) the family's image processor resizes to, when it is one fixed size
    (crop_size, else size, with height and width); None for dynamic-resolution families. With
    `edge_only_too`, a size given only as shortest_edge / longest_edge counts as that square."""
    image_processor = getattr(processor, "image_processor", None)
    for attr in ("crop_size", "size"):
        size = getattr(image_processor, attr, None)
        if size is None:
            continue
        get = size.get if hasattr(size, "get") else (lambda key, s=size: getattr(s, key, None))
        if get("height") and get("width"):
            return int(get("width")), int(get("height"))
        edge = get("shortest_edge") or get("longest_edge")
        if edge_only_too and edge:
            return int(edge), int(edge)
    return None


def random_resized_crop(image: Image.Image, rng: random.Random, size: tuple[int, int] | None) -> Image.Image:
    """The released training transform's geometric part. `size` None (a dynamic-resolution family)
    resizes the crop back to the image's own size, so the image's token count is unchanged."""
    params = crop_params(*image.size, rng)
    return apply_crop(image, params, size or image.size)


class ImageTransform:
    """The recipe's image transforms for one processor. `train` = (seed, epoch) applies
    data.train_transform; None applies data.eval_transform."""

    def __init__(self, data, processor):
        self.train_transform = getattr(data, "train_transform", "resize")
        self.eval_transform = getattr(data, "eval_transform", "deterministic")
        self.size = processor_input_size(processor)

    def active(self, train: tuple[int, int] | None) -> bool:
        if train is not None:
            return self.train_transform == "random_resized_crop"
        return self.eval_transform == "released"

    def __call__(self, images: list, sample_id: str, source: str = "",
                 train: tuple[int, int] | None = None) -> list:
        if not images or not self.active(train):
            return images
        # the evaluation key has no seed and no epoch: a sample is cropped the same way by every
        # evaluation and every `pefomed infer` of it
        key = ("train", *train) if train is not None else ("eval",)
        return [random_resized_crop(image, draw_rng(*key, source, sample_id, n), self.size)
                for n, image in enumerate(images)]


def describe(data, processor=None) -> dict:
    """What PRED.settings.json records about the evaluation images (`image_transform`)."""
    name = getattr(data, "eval_transform", "deterministic")
    if name != "released":
        return {"eval_transform": name, "detail": "the processor's resize and normalisation only"}
    size = processor_input_size(processor) if processor is not None else None
    return {"eval_transform": name,
            "detail": (f"random-resized crop (area scale {RELEASED_SCALE[0]}-{RELEASED_SCALE[1]}, aspect ratio 3/4-4/3, "
                       f"{RELEASED_INTERPOLATION}) to {f'{size[0]}x{size[1]}' if size else 'the image size'}, "
                       f"horizontal flip p={RELEASED_FLIP_P}, seeded per sample id (blip2_image_train, as the "
                       f"released PeFoMed evaluation ran it), then the processor")}
