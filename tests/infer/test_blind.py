"""The blind control (`blind=True`): same model, same prompt, no image, as docs/prompting.md says.

A family whose processor can go without an image gets the prompt with no image placeholder and
no pixels; PaliGemma, which needs one, gets a black image of its processor's input size in the
same place, so its token layout is unchanged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tiny_families import BUILDERS


@pytest.fixture(scope="module")
def spot(tmp_path_factory) -> Path:
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("blind") / "data", n_train=4, n_test=4)


def test_blind_prompt_is_the_same_text_without_the_image(tiny_run, spot, tmp_path):
    from pefomed.data.collate import Collator, blind_mode, build_prompt
    from pefomed.infer.fewshot import Prompting, prompt_settings
    from pefomed.infer.generate import predict
    from pefomed.models.run_dir import load_run
    from pefomed.records import read_split

    recipe, bundle = load_run(tiny_run)
    processor = bundle.processor
    sample = read_split(spot, "test")[0]
    seeing = Collator(processor, recipe.data, spot, train=False).encode(sample)
    blind = Collator(processor, recipe.data, spot, train=False, blind=True).encode(sample)
    image_id = bundle.model.config.image_token_id
    assert "pixel_values" in seeing and int((seeing["input_ids"] == image_id).sum()) > 0
    assert "pixel_values" not in blind and int((blind["input_ids"] == image_id).sum()) == 0
    text_only = processor(text=[build_prompt(processor, sample.question, 0)], return_tensors="pt")["input_ids"][0]
    assert torch.equal(blind["input_ids"], text_only)
    assert blind_mode(processor) == "no image"

    # the answers no longer depend on the image: two very different pictures, one question
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32), (255, 255, 255)).save(folder / "white.png")
    Image.new("RGB", (32, 32), (0, 0, 0)).save(folder / "black.png")
    from pefomed.infer.sources import folder_samples

    samples, root = folder_samples(folder, "Is there a bright spot in the image?")
    rows = {}
    for blind_flag in (False, True):
        out = predict(samples, root, recipe, bundle, tmp_path / f"{blind_flag}.jsonl", with_references=False,
                      prompting=Prompting(blind=blind_flag))
        rows[blind_flag] = [json.loads(line)["prediction"] for line in Path(out).read_text().splitlines()]
    assert rows[True][0] == rows[True][1]
    settings = prompt_settings(samples, root, recipe, processor, Prompting(blind=True))
    assert settings["blind"] is True and settings["blind_input"] == "no image"


def test_a_family_that_needs_an_image_sees_a_black_one_of_its_input_size(spot, tmp_path):
    from pefomed.data.collate import Collator, blind_mode
    from pefomed.models.loader import load_base
    from pefomed.recipe import validate_recipe
    from pefomed.records import read_split

    folder = BUILDERS["paligemma"](tmp_path / "paligemma")
    recipe = validate_recipe({"model": {"kind": "hf", "name_or_path": str(folder)},
                              "data": {"dir": str(spot), "max_length": 256}})
    processor = load_base(str(folder), recipe.model).processor
    sample = read_split(spot, "test")[0]
    seeing = Collator(processor, recipe.data, spot, train=False).encode(sample)
    blind = Collator(processor, recipe.data, spot, train=False, blind=True).encode(sample)
    assert torch.equal(blind["input_ids"], seeing["input_ids"])  # same tokens, image span included
    black = processor(text=["x"], images=[Image.new("RGB", (32, 32))], return_tensors="pt")["pixel_values"]
    assert torch.equal(blind["pixel_values"], black)
    assert not torch.equal(seeing["pixel_values"], black)
    assert blind_mode(processor) == "black image 32x32"
