"""Image ablations (`pefomed infer --image-ablation blank|shuffled|mismatched`), docs/prompting.md.

Each runs through the installed CLI on the untrained tiny-demo model (a recipe source: nothing to
train) and the bundled VQA-RAD subset: shuffled never shows a sample its own image, is the same for
a seed and another for another seed; mismatched shows an image of another organ; blank's pixels are
constant; the plan is the same whichever process of a data-parallel run answers a sample; PRED
rows keep their own `images` and say what was shown; resume refuses other ablation settings.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

LIMIT = ["--limit", "16"]


def pefomed(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["pefomed", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def settings(path: Path) -> dict:
    return json.loads(path.with_name(path.name.replace(".jsonl", ".settings.json")).read_text())["prompt"]


def infer(demo_data: Path, out: Path, *extra) -> list[dict]:
    done = pefomed("infer", "tiny-demo", "--data", demo_data, "--out", out, *LIMIT, *extra, cwd=out.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return rows(out)


@pytest.fixture(scope="module")
def shuffled0(demo_data, tmp_path_factory) -> Path:
    """One shuffled run (seed 0), shared by the tests that compare with it."""
    out = tmp_path_factory.mktemp("shuffled0") / "s0.jsonl"
    infer(demo_data, out, "--image-ablation", "shuffled")
    return out


def test_blank_like_is_a_constant_image_of_the_same_size_and_mode():
    from pefomed.data.image_ablation import blank_like

    for mode in ("L", "RGB", "RGBA", "I;16", "F"):
        source = Image.linear_gradient("L").resize((37, 23)).convert(mode)
        blank = blank_like(source)
        assert (blank.mode, blank.size) == (mode, (37, 23))
        assert all(low == high == 0 for low, high in
                   ([blank.getextrema()] if len(blank.getbands()) == 1 else blank.getextrema()))
        assert source.getextrema() != blank.getextrema()


def test_blank_collates_one_constant_picture_for_every_sample(demo_data):
    from pefomed.data.collate import Collator
    from pefomed.data.image_ablation import plan_ablation
    from pefomed.models.source import load_source, resolve_source
    from pefomed.records import read_split

    recipe, bundle = load_source(resolve_source("tiny-demo"))
    samples = read_split(demo_data, "test")
    two = [samples[0], next(s for s in samples if s.images != samples[0].images)]
    plan = plan_ablation(two, "blank", 0)
    seeing = Collator(bundle.processor, recipe.data, demo_data, train=False)
    blank = Collator(bundle.processor, recipe.data, demo_data, train=False, ablation=plan)
    pixels = [blank.encode(s)["pixel_values"] for s in two]
    own = [seeing.encode(s)["pixel_values"] for s in two]
    assert not torch.equal(own[0], own[1])  # two different pictures ...
    assert torch.equal(pixels[0], pixels[1])  # ... both shown as the same constant one
    for channel in pixels[0][0]:  # each channel one value: no content left
        assert torch.all(channel == channel.flatten()[0])
    # the same slot: same tokens as the seeing prompt
    assert torch.equal(blank.encode(two[0])["input_ids"], seeing.encode(two[0])["input_ids"])


def test_shuffled_shows_every_sample_another_image_reproducibly(demo_data, tmp_path, shuffled0):
    first = rows(shuffled0)
    again = infer(demo_data, tmp_path / "s0-again.jsonl", "--image-ablation", "shuffled", "--image-ablation-seed", "0")
    other = infer(demo_data, tmp_path / "s1.jsonl", "--image-ablation", "shuffled", "--image-ablation-seed", "1")
    own = {r["id"]: r["images"] for r in first}
    assert len({tuple(v) for v in own.values()}) >= 3
    for run in (first, other):
        by_image: dict = {}
        for r in run:
            assert r["images"] == own[r["id"]]  # `images` stays the sample's own
            assert not set(r["shown_images"]) & set(r["images"])
            by_image.setdefault(tuple(r["images"]), set()).add(tuple(r["shown_images"]))
        assert all(len(shown) == 1 for shown in by_image.values())  # one image, one substitute
    shown = lambda run: {r["id"]: r["shown_images"] for r in run}  # noqa: E731
    assert shown(first) == shown(again)
    assert shown(first) != shown(other)
    s0, s1 = settings(shuffled0), settings(tmp_path / "s1.jsonl")
    assert (s0["image_ablation"], s0["image_ablation_seed"], s1["image_ablation_seed"]) == ("shuffled", 0, 1)
    assert s0["image_ablation_sha256"] == settings(tmp_path / "s0-again.jsonl")["image_ablation_sha256"]
    assert s0["image_ablation_sha256"] != s1["image_ablation_sha256"]
    # the mapping is what the sha256 covers
    from pefomed.data.image_ablation import ImageAblation

    assert ImageAblation("shuffled", 0, shown(first)).sha256() == s0["image_ablation_sha256"]


def test_mismatched_crosses_organs_and_works_with_ranking(demo_data, tmp_path):
    from pefomed.records import read_split

    organ_of_image = {tuple(s.images): s.meta["organ"] for s in read_split(demo_data, "test")}
    out = tmp_path / "m.jsonl"
    mismatched = infer(demo_data, out, "--image-ablation", "mismatched", "--closed-answer", "rank")
    for r in mismatched:
        assert organ_of_image[tuple(r["shown_images"])] != r["meta"]["organ"]
    assert settings(out)["image_ablation"] == "mismatched" and settings(out)["closed_answer"] == "rank"
    normal = infer(demo_data, tmp_path / "n.jsonl", "--closed-answer", "rank")
    assert all("shown_images" not in r for r in normal)  # no ablation: rows as before
    assert settings(tmp_path / "n.jsonl")["image_ablation"] is None
    blank = infer(demo_data, tmp_path / "b.jsonl", "--image-ablation", "blank", "--closed-answer", "rank")
    assert all(r["shown_images"] == r["images"] for r in blank)  # the own paths, shown blank
    assert settings(tmp_path / "b.jsonl")["image_ablation"] == "blank"


def test_the_assignment_is_the_same_in_every_process_of_a_data_parallel_run(demo_data, tmp_path, shuffled0):
    whole = rows(shuffled0)
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    out = tmp_path / "two.jsonl"
    for rank in (1, 0):  # no rendezvous address: no barrier, rank 0 merges once both parts exist
        done = pefomed("infer", "tiny-demo", "--data", demo_data, "--out", out, *LIMIT, "--image-ablation",
                       "shuffled", cwd=tmp_path,
                       env={**base, "RANK": str(rank), "WORLD_SIZE": "2"})
        assert done.returncode == 0, done.stdout + done.stderr
    assert [(r["id"], r["shown_images"]) for r in rows(out)] == [(r["id"], r["shown_images"]) for r in whole]
    assert settings(out)["image_ablation_sha256"] == settings(shuffled0)["image_ablation_sha256"]


def test_resume_refuses_other_ablation_settings(demo_data, tmp_path, shuffled0):
    out = tmp_path / "pred.jsonl"
    out.write_text(shuffled0.read_text())
    out.with_name("pred.settings.json").write_text(shuffled0.with_name("s0.settings.json").read_text())
    # an interrupted run: its .partial answers and settings record
    lines = out.read_text().splitlines(keepends=True)
    out.with_name("pred.jsonl.partial").write_text("".join(lines[:5]))
    out.with_name("pred.settings.json.partial").write_text(out.with_name("pred.settings.json").read_text())
    out.unlink()
    for other in (["--image-ablation", "shuffled", "--image-ablation-seed", "1"], []):
        done = pefomed("infer", "tiny-demo", "--data", demo_data, "--out", out, *LIMIT, *other, cwd=tmp_path)
        assert done.returncode == 2, (other, done.stdout + done.stderr)
        assert "interrupted run with other inputs" in done.stderr and "Traceback" not in done.stderr
    resumed = infer(demo_data, out, "--image-ablation", "shuffled")
    assert [line for line in out.read_text().splitlines(keepends=True)] == lines and len(resumed) == len(lines)


@pytest.mark.parametrize("args, says", [
    (["--blind", "--image-ablation", "blank"], "--blind and --image-ablation blank are two image controls"),
    (["--image-ablation", "noise"], "--image-ablation must be one of blank, shuffled, mismatched"),
    (["--images", "one", "--question", "Is it normal?", "--image-ablation", "shuffled"],
     "--image-ablation shuffled needs at least two different images"),
    (["--images", "two", "--question", "Is it normal?", "--image-ablation", "mismatched"],
     "has no organ or modality in its meta"),
])
def test_bad_combinations_are_one_clear_error(args, says, demo_data, tmp_path):
    for name, count in (("one", 1), ("two", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    source = [] if "--images" in args else ["--data", demo_data]
    done = pefomed("infer", "tiny-demo", *source, "--out", tmp_path / "p.jsonl", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    message = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and says in message[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "p.jsonl").exists()


def test_an_out_of_range_seed_names_its_key():
    from pefomed.errors import UserError
    from pefomed.infer.fewshot import Prompting

    with pytest.raises(UserError) as err:
        Prompting(image_ablation="shuffled", image_ablation_seed=-1)
    assert "`image_ablation_seed` must be at least 0, got -1" in str(err.value)
    assert err.value.naming_flags({"image_ablation_seed": "--image-ablation-seed"}).startswith("--image-ablation-seed")


def test_mismatched_in_one_group_suggests_shuffled(demo_data):
    from pefomed.data.image_ablation import plan_ablation
    from pefomed.errors import UserError
    from pefomed.records import read_split

    chest = [s for s in read_split(demo_data, "test") if s.meta["organ"] == "CHEST"]
    assert len({tuple(s.images) for s in chest}) >= 2
    with pytest.raises(UserError) as err:
        plan_ablation(chest, "mismatched", 0)
    assert "one organ/modality group (organ CHEST)" in str(err.value) and "shuffled" in err.value.hint
    assert err.value.keys == ("image_ablation",)
