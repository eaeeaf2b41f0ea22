"""train.feature_cache: the frozen vision tower runs once per image, later epochs train from
RUN_DIR/feature_cache, and nothing else changes.

- model level (LLaVA and the composed model): a cached forward gives the uncached logits exactly,
  a full hit never runs the tower, the stored tensors are really what is used (zeroing them changes
  the logits), they keep the tower's dtype, and closing the cache gives the model its own path back;
- training: two epochs cached equal two epochs uncached (losses and adapter) for LLaVA (with
  DataLoader workers under ZeRO-3) and for the composed model in bf16; epoch 1 stores, epoch 2
  reads, train_log.jsonl and feature_cache/summary.json say so;
- resume: a run resumed mid-epoch-1 with half of the cache gone (so its micro-batches mix hits
  and misses) ends with the uninterrupted run's adapter bit for bit;
- refusals: LoRA on the tower, a trained tower, augmentation, an unsupported family, each named.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).parents[1] / "composed"))

COMMON = ["train.epochs=2", "train.batch_size=4", "train.lr=5e-3", "method.dropout=0.0", "train.seed=3",
          "train.length_prepass=false"]


@pytest.fixture(scope="module")
def spot_data(tmp_path_factory):
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("spot") / "data", n_train=16, n_test=4)


@pytest.fixture(scope="module")
def composed_parts(tmp_path_factory):
    from composed_parts import build_parts, composed_overrides

    return composed_overrides(*build_parts(tmp_path_factory.mktemp("parts")))


def _recipe(data, extra=()):
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo", [*COMMON, *extra])
    recipe.data.dir = str(data)
    return recipe


def _train(run, data, extra=()):
    from pefomed.train.loop import train

    train(_recipe(data, extra), run)
    rows = [json.loads(line) for line in open(run / "train_log.jsonl")]
    return rows, load_file(run / "adapter" / "adapter_model.safetensors")


# ------------------------------------------------------------------ model level


def _bundle(kind, tmp_path, spot_data, composed_parts, precision="fp32"):
    from pefomed.models.loader import load_base, materialize_base
    from pefomed.models.peft_methods import apply_method

    recipe = _recipe(spot_data, composed_parts if kind == "composed" else ())
    bundle = load_base(materialize_base(recipe.model, tmp_path), recipe.model, precision)
    return recipe, bundle, apply_method(bundle.model, recipe.method)  # the method freezes the tower


def _tower_blocks(model):
    """The first transformer block of the vision tower (it runs only when the tower does)."""
    tower = model.vision_tower if hasattr(model, "patch_token_source") else model.model.vision_tower
    return tower.encoder.layers[0]


@pytest.mark.parametrize("kind", ["llava", "composed"])
def test_cached_forward_is_the_computed_one_and_skips_the_tower(kind, tmp_path, spot_data, composed_parts):
    from pefomed.data.collate import Collator
    from pefomed.data.train_batches import pixel_keys
    from pefomed.models.feature_cache import DIGEST_KEY, content_digest, open_feature_cache
    from pefomed.records import read_split

    recipe, bundle, peft_model = _bundle(kind, tmp_path, spot_data, composed_parts)
    model = bundle.model.eval()
    collator = Collator(bundle.processor, recipe.data, spot_data, train=True)
    batch = collator([collator.encode(s) for s in read_split(spot_data, "train")[:3]])
    batch.pop("labels")
    keys = pixel_keys(batch["pixel_values"])
    assert len(set(keys)) == 3

    runs = []
    _tower_blocks(model).register_forward_hook(lambda *args: runs.append(1))
    with torch.no_grad():
        plain = model(**batch).logits
        cache = open_feature_cache(recipe, peft_model, tmp_path / "run")
        with cache.serving(keys):  # miss: computed and stored
            first = model(**batch).logits
        with cache.serving(keys):  # hit: read, the tower does not run
            second = model(**batch).logits
        assert len(runs) == 2 and cache.take_counts() == (3, 3)
        assert torch.equal(plain, first) and torch.equal(plain, second)

        files = sorted(cache.root.glob("*/*.safetensors"))
        assert len(files) == 3 and {f.stem for f in files} == set(keys)
        tower_dtype = next(model.parameters()).dtype
        for file in files:  # rewritten with valid tensors of the right shape: fails its digest, recomputed
            stored = load_file(file)
            assert all(t.dtype == tower_dtype for t in stored.values())
            save_file({name: torch.zeros_like(t) for name, t in stored.items()}, str(file))
        with cache.serving(keys):
            assert torch.equal(model(**batch).logits, plain) and len(runs) == 3
        for file in files:  # the stored tensors, digest and all, are what the next hit uses
            zeros = {name: torch.zeros_like(t) for name, t in load_file(file).items()}
            save_file(zeros, str(file), metadata={DIGEST_KEY: content_digest(zeros)})
        with cache.serving(keys):
            zeroed = model(**batch).logits
        assert not torch.allclose(zeroed, plain, atol=1e-3) and len(runs) == 3
        with cache.serving(None):  # no keys (evaluation, generation): the tower runs
            assert torch.equal(model(**batch).logits, plain)

        cache.close()
        assert torch.equal(model(**batch).logits, plain) and len(runs) == 5


# ------------------------------------------------------------------ training


def _by_epoch(rows):
    return [r for r in rows if r["epoch"] <= 1.0], [r for r in rows if r["epoch"] > 1.0]


@pytest.mark.slow
def test_llava_two_epochs_cached_equal_uncached_with_workers_under_zero3(tmp_path, spot_data):
    """The cached run differs from the plain one in three ways at once (cache, 2 DataLoader workers
    that hash and read ahead, ZeRO-3 instead of ZeRO-2), each of which must leave the losses alone."""
    plain_rows, plain = _train(tmp_path / "plain", spot_data)
    run = tmp_path / "cached"
    rows, adapter = _train(run, spot_data, ["train.feature_cache=true", "train.num_workers=2",
                                            "train.deepspeed=zero3"])
    assert [r["step"] for r in rows] == [r["step"] for r in plain_rows] and len(rows) == 8
    for a, b in zip(plain_rows, rows):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6), a["step"]
    assert adapter.keys() == plain.keys()
    for key in plain:
        assert torch.allclose(adapter[key], plain[key], atol=1e-5), key
    first, second = _by_epoch(rows)
    assert all(r["feature_cache_hits"] == 0 and r["feature_cache_misses"] == 4 for r in first)
    assert all(r["feature_cache_hits"] == 4 and r["feature_cache_misses"] == 0 for r in second)
    summary = json.loads((run / "feature_cache" / "summary.json").read_text())
    assert summary["family"] == "llava" and (summary["hits"], summary["misses"], summary["entries"]) == (16, 16, 16)
    assert "feature_cache_hits" not in plain_rows[0]


@pytest.mark.slow
def test_composed_two_epochs_cached_equal_uncached_in_bf16(tmp_path, spot_data, composed_parts):
    extra = [*composed_parts, "train.precision=bf16"]
    plain_rows, plain = _train(tmp_path / "plain", spot_data, extra)
    rows, adapter = _train(tmp_path / "cached", spot_data, [*extra, "train.feature_cache=true"])
    for a, b in zip(plain_rows, rows, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5), a["step"]  # the cache keeps the bf16 bits
    for key in plain:
        assert torch.allclose(adapter[key].float(), plain[key].float(), atol=1e-5), key
    first, second = _by_epoch(rows)
    assert sum(r["feature_cache_misses"] for r in first) == 16 and sum(r["feature_cache_hits"] for r in second) == 16
    files = list((tmp_path / "cached" / "feature_cache").glob("*/*/*.safetensors"))
    assert len(files) == 16
    stored = load_file(files[0])["patch_tokens"]
    assert stored.dtype == torch.bfloat16 and stored.shape == (64, 64)  # 8 x 8 patches, CLS dropped, before the merge


@pytest.mark.slow
def test_resumed_with_half_the_cache_gone_equals_uninterrupted(tmp_path, spot_data):
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    extra = ["train.feature_cache=true", "train.save_every=2", "train.keep_checkpoints=10", "method.dropout=0.1"]
    straight = tmp_path / "straight"
    _, expected = _train(straight, spot_data, extra)

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    (resumed / "checkpoints" / "latest").write_text("step-0000002")  # as if killed after step 2 of 8
    for file in sorted((resumed / "feature_cache").glob("*/*/*.safetensors"))[::2]:
        file.unlink()  # micro-batches of both epochs now mix stored and missing images
    (resumed / "adapter").rename(tmp_path / "old-adapter")
    train(load_recipe(str(resumed / "recipe.yaml")), resumed, resume=True)

    got = load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    rows = [json.loads(line) for line in open(resumed / "train_log.jsonl")]
    later = [r for r in rows if r["step"] > 2]
    assert len(rows) == 8 and sum(r["feature_cache_hits"] for r in later) > 0
    assert sum(r["feature_cache_misses"] for r in later) > 0


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("overrides, words", [
    (["method.vision_lora=true"], ["method.vision_lora", "frozen vision tower"]),
    (["method.name=full", "method.full_parts=[vision,projector,llm]", "model.freeze_vision=false"],
     ["method.name=full", "vision is in method.full_parts"]),
    (["data.train_transform=random_resized_crop"], ["data.train_transform=random_resized_crop", "augmentation"]),
])
def test_refused_where_cached_features_would_be_wrong(overrides, words, spot_data, tmp_path, capsys):
    from pefomed.cli.app import main

    code = main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(tmp_path / "run"),
                 "train.feature_cache=true", *overrides])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "train.feature_cache" in err, err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "run" / "feature_cache").exists()


def test_an_unsupported_family_is_named(spot_data, tmp_path, capsys):
    from tiny_families import BUILDERS

    from pefomed.cli.app import main

    model_dir = BUILDERS["paligemma"](tmp_path / "paligemma")
    code = main(["train", "tiny-demo", "--data", str(spot_data), "--out", str(tmp_path / "run"), "model.kind=hf",
                 f"model.name_or_path={model_dir}", "train.feature_cache=true"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "paligemma family" in err and "supported: composed" in err and "llava" in err, err


def test_the_loaded_model_is_checked_too(tmp_path, spot_data):
    """A model whose class is not one the cache knows is refused after loading, by its model type
    (a hub id whose config could not be read before loading reaches this check)."""
    from tiny_families import BUILDERS

    from pefomed.errors import UserError
    from pefomed.models.feature_cache import open_feature_cache
    from pefomed.models.loader import load_base
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import load_recipe

    model_dir = BUILDERS["paligemma"](tmp_path / "paligemma")
    recipe = load_recipe("tiny-demo", ["model.kind=hf", f"model.name_or_path={model_dir}"])
    bundle = load_base(str(model_dir), recipe.model)
    model = apply_method(bundle.model, recipe.method)
    with pytest.raises(UserError, match="paligemma family"):
        open_feature_cache(recipe, model, tmp_path / "run")
