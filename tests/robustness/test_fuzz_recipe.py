"""Fuzz recipes and `section.key=value` overrides: each case is the tiny-demo recipe with one
seeded mutation (a value replaced, a key removed or added, the file cut, re-encoded as UTF-16
or Latin-1, filled with binary, nested thousands deep) or one hostile override. Loading must
give a Recipe whose every number is finite and that reads back from its own YAML, or one
UserError naming the file or the override key."""

from __future__ import annotations

import math
import random

import pytest
import yaml

import fuzzlib
from pefomed.errors import UserError
from pefomed.recipe import Recipe, builtin_recipe_path, load_recipe

KEYS = ["train.lr", "train.epochs", "train.max_steps", "train.batch_size", "train.betas", "train.seed",
        "train.max_grad_norm", "train.warmup_steps", "train.deepspeed", "train.precision", "method.r", "method.alpha",
        "method.dropout", "method.target_modules", "method.name", "model.kind", "model.freeze_vision",
        "model.tiny.image_size", "data.vqa_template", "data.report_prompt", "data.max_length", "infer.num_beams",
        "data.train_split", "nosuch.key", "train", "train.lr.x", "", ".", "a..b", "train.\ud800"]
OVERRIDE_VALUES = [".inf", "-.inf", ".nan", "true", "false", "null", "~", "1e400", "-1", "0", "1e-300", "3",
                   "[", "]", "{a: 1}", "[1, 2, 3]", "[.inf, 0.9]", "!!python/object/apply:os.system ['touch x']",
                   "!!binary aGVsbG8=", "2020-01-01", "'\\ud800'", '"\\ud800"', "x" * 100_000, "[" * 5000,
                   "&a [*a]", "*undefined", "0x10", "0o17", "1_000", "yes", "on", "'{question}'", "pool:nosuch", ""]


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def _check_recipe(recipe: Recipe, label: str) -> None:
    dumped = recipe.model_dump()
    assert _finite(dumped), f"{label}: a non-finite number was accepted"
    again = Recipe.model_validate(yaml.safe_load(recipe.to_yaml()))
    assert again == recipe, f"{label}: the resolved recipe does not read back from its YAML"
    t = recipe.train
    assert not isinstance(t.lr, bool) and t.lr > 0 and t.epochs > 0, label


def _mutated_recipe_file(tmp, rng: random.Random) -> tuple:
    base = builtin_recipe_path("tiny-demo").read_text()
    path = tmp / "recipe.yaml"
    if rng.random() < 0.6:
        doc, label = fuzzlib.mutate_doc(yaml.safe_load(base), rng)
        text = yaml.safe_dump(doc, allow_unicode=False).replace(yaml.safe_dump(fuzzlib.DEEP).split("\n")[0],
                                                                "[" * 3000 + "]" * 3000)
        path.write_text(text)
    else:
        data, label = fuzzlib.mutate_bytes(base.encode(), rng)
        path.write_bytes(data)
    return path, label


@pytest.mark.parametrize("part", range(3))
def test_recipe_and_override_fuzz(part, tmp_path):
    n = max(1, fuzzlib.cases("recipe") // 3)
    outcomes = {"loaded": 0, "refused": 0}
    for seed in range(part * n, (part + 1) * n):
        rng = random.Random(f"recipe:{seed}")
        if rng.random() < 0.5:
            path, label = _mutated_recipe_file(tmp_path, rng)
            overrides = []
        else:
            path = builtin_recipe_path("tiny-demo")
            overrides = [f"{rng.choice(KEYS)}={rng.choice(OVERRIDE_VALUES)}" for _ in range(rng.choice([1, 1, 2]))]
            label = f"overrides {[o[:60] for o in overrides]}"
        label = f"recipe seed {seed}: {label}"
        try:
            recipe = load_recipe(path, overrides)
        except UserError as err:
            message = str(err)
            assert len(message) < 5000, f"{label}: a {len(message)}-character message"
            assert str(path) in message or "override" in message, f"{label}: names neither file nor override: {message}"
            message.encode("utf-8")  # printable: no lone surrogate reaches the terminal
            outcomes["refused"] += 1
            continue
        _check_recipe(recipe, label)
        outcomes["loaded"] += 1
    print(f"recipe part {part}: {n} cases, {outcomes}")


@pytest.mark.parametrize("override, message", [
    ("train.epochs=.inf", "finite"), ("train.lr=.inf", "finite"), ("train.lr=.nan", "finite"),
    ("train.lr=true", "true/false"), ("train.max_steps=false", "true/false"), ("train.betas=[0.9, .inf]", "finite"),
    ("method.alpha=true", "true/false"),
])
def test_non_finite_and_boolean_numbers_are_refused(override, message):
    with pytest.raises(UserError, match=message):
        load_recipe("tiny-demo", [override])


def test_booleans_stay_booleans_and_numbers_stay_numbers():
    # (freeze_vision=false must agree with a method that trains the vision encoder: vision LoRA here)
    recipe = load_recipe("tiny-demo", ["model.freeze_vision=false", "method.vision_lora=true", "train.lr=3e-5",
                                       "train.betas=[0.8, 0.9]"])
    assert recipe.model.freeze_vision is False and recipe.train.lr == 3e-5 and recipe.train.betas == (0.8, 0.9)


@pytest.mark.parametrize("content, message", [
    ("train:\n  lr: 0.1\n".encode("utf-16"), "UTF-16 or binary"),
    ("train:\n  seed: 1  # café\n".encode("latin-1"), "not UTF-8 text"),
    (bytes(range(256)) * 4, "UTF-16 or binary"),
    (b"train: " + b"[" * 5000, "nested too deeply"),
    (b'train:\n  deepspeed: "\\ud800"\n', "lone surrogate"),
    (b"!!python/object/apply:os.system ['touch /tmp/pefomed-never']\n", "malformed YAML"),
])
def test_unreadable_recipe_files(tmp_path, content, message):
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)
