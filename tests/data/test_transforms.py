"""data.train_transform / data.eval_transform (pefomed.data.transforms): the released
random-resized crop (blip2_image_train: scale 0.5-1.0, ratio 3/4-4/3, bicubic, horizontal flip),
seeded per (train.seed, epoch, sample id) in training and per sample id at evaluation; the
default path (no transform) unchanged bit for bit."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from PIL import Image

from pefomed.data.collate import Collator
from pefomed.data.images import load_image
from pefomed.data.transforms import (RELEASED_RATIO, RELEASED_SCALE, CropParams, apply_crop, crop_params, describe,
                                     draw_rng, processor_input_size)
from pefomed.recipe import load_recipe
from pefomed.records import read_split


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from transformers import AutoProcessor

    from pefomed.models.tiny import build_tiny
    from pefomed.models.tiny import TinyConfig

    return AutoProcessor.from_pretrained(build_tiny(TinyConfig(), tmp_path_factory.mktemp("tiny") / "model"))


def data_section(*overrides):
    return load_recipe("tiny-demo", list(overrides)).data


def gradient_image(width=61, height=47):
    """An image whose every pixel differs from its neighbours, so any crop or flip shows."""
    image = Image.new("RGB", (width, height))
    image.putdata([((7 * x + 3 * y) % 256, (11 * y) % 256, (x * y) % 256) for y in range(height) for x in range(width)])
    return image


def test_crop_parameters_stay_within_the_released_ranges():
    flips = 0
    for n in range(2000):
        width, height = (640, 480) if n % 2 else (300, 420)
        p = crop_params(width, height, draw_rng("test", n))
        assert 0 <= p.top and p.top + p.height <= height and 0 <= p.left and p.left + p.width <= width
        # rounding the sides to whole pixels moves area and ratio by at most about a pixel's worth
        area = p.width * p.height / (width * height)
        assert RELEASED_SCALE[0] - 0.01 <= area <= RELEASED_SCALE[1] + 1e-9
        assert RELEASED_RATIO[0] - 0.01 <= p.width / p.height <= RELEASED_RATIO[1] + 0.01
        flips += p.flip
    assert 900 < flips < 1100  # p = 0.5


def test_an_elongated_image_falls_back_to_torchvisions_centre_crop():
    # 1000 x 10: no crop of area >= half with ratio <= 4/3 fits, so the centre 13 x 10 (ratio clamped)
    p = crop_params(1000, 10, draw_rng("thin"))
    assert (p.top, p.left, p.height, p.width) == (0, (1000 - 13) // 2, 10, 13)


def test_the_parameter_distribution_matches_torchvision():
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    image = gradient_image(200, 150)  # get_params reads its size only
    theirs = [RandomResizedCrop.get_params(image, list(RELEASED_SCALE), list(RELEASED_RATIO)) for _ in range(3000)]
    ours = [crop_params(200, 150, draw_rng("dist", n)) for n in range(3000)]
    for stat in (lambda h, w: h * w / 30000, lambda h, w: math.log(w / h)):
        mean_theirs = sum(stat(h, w) for _, _, h, w in theirs) / len(theirs)
        mean_ours = sum(stat(p.height, p.width) for p in ours) / len(ours)
        assert mean_ours == pytest.approx(mean_theirs, abs=0.02)


@pytest.mark.parametrize("flip", [False, True])
def test_crop_and_resize_are_torchvisions_on_a_pil_image(flip):
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    image = gradient_image()
    params = CropParams(top=5, left=9, height=33, width=40, flip=flip)
    ours = apply_crop(image, params, (448, 448))
    theirs = F.resized_crop(image, 5, 9, 33, 40, [448, 448], interpolation=InterpolationMode.BICUBIC)
    if flip:
        theirs = F.hflip(theirs)
    assert ours.size == (448, 448) and ours.tobytes() == theirs.tobytes()


def test_input_size_of_fixed_and_dynamic_processors(processor):
    from transformers import BlipImageProcessor, Qwen2VLImageProcessor

    from pefomed.models.tiny import TinyConfig

    side = TinyConfig().image_size  # the tiny LLaVA's CLIP crop_size
    assert processor_input_size(processor) == (side, side)
    # the composed recipes' BLIP-2 image processor at 448 px
    blip = type("P", (), {"image_processor": BlipImageProcessor(size={"height": 448, "width": 448})})()
    assert processor_input_size(blip) == (448, 448)
    qwen = type("P", (), {"image_processor": Qwen2VLImageProcessor()})()
    assert processor_input_size(qwen) is None  # dynamic resolution: the crop keeps the image's own size


def pixels(collator, sample, **kw):
    return collator.encode(sample, **kw)["pixel_values"]


def test_default_path_is_unchanged_bit_for_bit(processor, demo_data):
    sample = read_split(demo_data, "train")[0]
    collator = Collator(processor, data_section(), demo_data, train=True)
    raw = processor.image_processor(images=[load_image(demo_data / sample.images[0])], return_tensors="pt")
    assert torch.equal(pixels(collator, sample), raw["pixel_values"])
    # the epoch and seed change nothing when data.train_transform is resize
    assert torch.equal(pixels(collator, sample, epoch=3, seed=9), raw["pixel_values"])
    explicit = Collator(processor, data_section("data.train_transform=resize", "data.eval_transform=deterministic"),
                        demo_data, train=True)
    assert torch.equal(pixels(explicit, sample, epoch=3, seed=9), raw["pixel_values"])


def test_training_crop_is_seeded_by_seed_epoch_and_sample(processor, demo_data):
    a, b = read_split(demo_data, "train")[:2]
    data = data_section("data.train_transform=random_resized_crop")
    collator = Collator(processor, data, demo_data, train=True)
    first = pixels(collator, a, epoch=0, seed=42)
    # the same draw in a fresh collator (another DataLoader worker, a resumed run) is bit-exact
    assert torch.equal(first, pixels(Collator(processor, data, demo_data, train=True), a, epoch=0, seed=42))
    assert not torch.equal(first, pixels(collator, a, epoch=1, seed=42)), "a new crop each epoch"
    assert not torch.equal(first, pixels(collator, a, epoch=0, seed=43)), "train.seed changes the crops"
    plain = pixels(Collator(processor, data_section(), demo_data, train=True), a)
    assert not torch.equal(first, plain)
    # token layout untouched: the crop is resized to the processor's input size
    assert first.shape == plain.shape
    assert torch.equal(collator.encode(a, epoch=0, seed=42)["input_ids"],
                       collator.encode(a, epoch=1, seed=42)["input_ids"])
    # without an epoch (evaluation) the default eval transform applies: no crop
    assert torch.equal(pixels(collator, a), plain)
    assert not torch.equal(pixels(collator, b, epoch=0, seed=42), pixels(collator, b, epoch=1, seed=42))


def test_released_eval_transform_crops_per_sample_id_only(processor, demo_data):
    a = read_split(demo_data, "test")[0]
    released = Collator(processor, data_section("data.eval_transform=released"), demo_data, train=False)
    plain = Collator(processor, data_section(), demo_data, train=False)
    crop = pixels(released, a)
    assert not torch.equal(crop, pixels(plain, a))
    # the same crop in any run, whatever train.seed: evaluation during training and `pefomed infer` agree
    again = Collator(processor, data_section("data.eval_transform=released", "train.seed=7"), demo_data, train=False)
    assert torch.equal(crop, pixels(again, a))
    assert describe(data_section())["eval_transform"] == "deterministic"
    detail = describe(released.data, processor)
    assert detail["eval_transform"] == "released" and "0.5-1.0" in detail["detail"]


def test_the_crop_is_the_released_pipeline_on_the_loaded_image(processor, demo_data):
    """encode's pixels = the processor applied to apply_crop(image, the keyed draw)."""
    sample = read_split(demo_data, "train")[3]
    collator = Collator(processor, data_section("data.train_transform=random_resized_crop"), demo_data, train=True)
    image = load_image(demo_data / sample.images[0])
    params = crop_params(*image.size, draw_rng("train", 42, 5, "", sample.id, 0))
    expected = processor.image_processor(images=[apply_crop(image, params, processor_input_size(processor))],
                                         return_tensors="pt")["pixel_values"]
    assert torch.equal(pixels(collator, sample, epoch=5, seed=42), expected)


def test_training_batches_crop_anew_each_epoch(processor, demo_data):
    from pefomed.data.train_batches import EpochPlan, TrainingBatches

    samples = read_split(demo_data, "train")[:4]
    collator = Collator(processor, data_section("data.train_transform=random_resized_crop"), demo_data, train=True)
    plan = EpochPlan.make(len(samples), 4, 1, 1, 2, None, where="test")
    batches = TrainingBatches(samples, collator, plan, batch_size=4, seed=0, rank=0, world=1, pad_blank_image=False)
    ids0, batch0 = batches[0]
    ids1, batch1 = batches[1]
    order = [ids1.index(i) for i in ids0]
    assert not torch.equal(batch0["pixel_values"], batch1["pixel_values"][order])
    assert torch.equal(batch0["pixel_values"], TrainingBatches(samples, collator, plan, 4, 0, 0, 1, False)[0][1]["pixel_values"])


def rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_cli_explicit_defaults_change_nothing_and_released_runs(demo_data, tmp_path):
    """`pefomed infer` from recipe files: data.eval_transform=deterministic written out gives the
    answers of the built-in recipe byte for byte; `released` runs the crop at inference."""
    from pefomed.cli.app import main

    common = ["--data", str(demo_data), "--max-new-tokens", "3", "--limit", "4"]
    for name, overrides in (("explicit", ["data.eval_transform=deterministic", "data.train_transform=resize"]),
                            ("released", ["data.eval_transform=released"])):
        (tmp_path / f"{name}.yaml").write_text(load_recipe("tiny-demo", overrides).to_yaml())
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "default.jsonl"), *common]) == 0
    assert main(["infer", str(tmp_path / "explicit.yaml"), "--out", str(tmp_path / "explicit.jsonl"), *common]) == 0
    assert main(["infer", str(tmp_path / "released.yaml"), "--out", str(tmp_path / "released.jsonl"), *common]) == 0
    assert (tmp_path / "default.jsonl").read_bytes() == (tmp_path / "explicit.jsonl").read_bytes()
    assert [r["id"] for r in rows(tmp_path / "released.jsonl")] == [r["id"] for r in rows(tmp_path / "default.jsonl")]
    # PRED.settings.json says which transform made the answers
    settings = {name: json.loads((tmp_path / f"{name}.settings.json").read_text())["image_transform"]
                for name in ("default", "released")}
    assert settings["default"]["eval_transform"] == "deterministic"
    assert settings["released"]["eval_transform"] == "released" and "crop" in settings["released"]["detail"]


def test_draws_do_not_depend_on_global_random_state():
    random.seed(1)
    torch.manual_seed(1)
    a = crop_params(300, 200, draw_rng("k", 1))
    random.seed(2)
    torch.manual_seed(2)
    assert crop_params(300, 200, draw_rng("k", 1)) == a
