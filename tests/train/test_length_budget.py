"""The length pre-pass (train.length_prepass): every training sample's tokens counted before step
1, the distribution reported and kept in RUN_DIR, and over-long prompts refused by name before
any step is taken (not when the loop reaches them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from pefomed.records import read_split, write_split
from pefomed.data.length_budget import _digest


def pefomed(*args):
    exe = shutil.which("pefomed")
    return [exe, *args] if exe else [sys.executable, "-m", "pefomed.cli.app", *args]


@pytest.fixture(scope="module")
def processor_and_recipe(tmp_path_factory):
    from pefomed.models.loader import load_base, materialize_base
    from pefomed.recipe import load_recipe

    recipe = load_recipe("tiny-demo")
    base = materialize_base(recipe.model, tmp_path_factory.mktemp("base"))
    return recipe, load_base(base, recipe.model).processor


@pytest.fixture()
def long_question_data(demo_data, tmp_path):
    """The demo DATA_DIR with two training questions made far longer than the others."""
    data = tmp_path / "data"
    shutil.copytree(demo_data, data)
    samples = read_split(data, "train")
    for sample in samples[3:5]:
        sample.question = "is there " + "a very long clinical history and " * 40 + "a finding?"
    write_split(data, "train", samples)
    return data, [s.id for s in samples[3:5]], len(samples)


def test_counts_every_sample_with_its_image_tokens(demo_data, processor_and_recipe, tmp_path):
    from pefomed.data.collate import Collator
    from pefomed.data.length_budget import length_budget

    recipe, processor = processor_and_recipe
    samples = read_split(demo_data, "train")
    collator = Collator(processor, recipe.data, demo_data, train=True)
    summary = length_budget(samples, collator, 256, 0, tmp_path / "lb.json", "k", where="train")
    assert summary["samples"] == len(samples)
    # the tiny LLaVA: a 32 px image in 4 px patches is 64 image tokens, every sample one image
    assert summary["image_tokens"]["min"] == summary["image_tokens"]["max"] == 64
    assert summary["prompt_tokens"]["min"] > 64
    # an answer is at least one token plus the end token; totals add up
    assert summary["answer_tokens"]["min"] >= 2
    assert summary["total_tokens"]["max"] <= summary["prompt_tokens"]["max"] + summary["answer_tokens"]["max"]
    # the encoding the loop will see has exactly the counted prompt + answer tokens
    first = collator.encode(samples[0])
    lengths = json.loads((tmp_path / "lb.json").read_text())["summary"]
    assert lengths["total_tokens"]["max"] >= len(first["input_ids"])


def test_workers_measure_the_same(demo_data, processor_and_recipe, tmp_path):
    from pefomed.data.collate import Collator
    from pefomed.data.length_budget import length_budget

    recipe, processor = processor_and_recipe
    samples = read_split(demo_data, "train")
    collator = Collator(processor, recipe.data, demo_data, train=True)
    alone = length_budget(samples, collator, 256, 0, tmp_path / "a.json", "k", where="train")
    workers = length_budget(samples, collator, 256, 2, tmp_path / "b.json", "k", where="train")
    assert alone == workers


def test_kept_in_run_dir_and_read_back_when_the_key_matches(demo_data, processor_and_recipe, tmp_path):
    from pefomed.data.collate import Collator
    from pefomed.data.length_budget import length_budget

    recipe, processor = processor_and_recipe
    samples = read_split(demo_data, "train")
    collator = Collator(processor, recipe.data, demo_data, train=True)
    cache = tmp_path / "lb.json"
    length_budget(samples, collator, 256, 0, cache, "key-1", where="train")
    stored = json.loads(cache.read_text())
    stored["summary"]["samples"] = -1  # marks the stored copy: a read returns it, a new measurement does not
    stored["sha256"] = _digest("key-1", stored["summary"])  # as if written so
    cache.write_text(json.dumps(stored))
    assert length_budget(samples, collator, 256, 0, cache, "key-1", where="train")["samples"] == -1
    assert length_budget(samples, collator, 256, 0, cache, "key-2", where="train")["samples"] == len(samples)


def test_an_edited_budget_is_measured_again_not_trusted(demo_data, processor_and_recipe, tmp_path, capfd):
    """Emptying too_long by hand would let over-long prompts through: the digest catches it."""
    from pefomed.data.collate import Collator
    from pefomed.data.length_budget import length_budget

    recipe, processor = processor_and_recipe
    samples = read_split(demo_data, "train")
    collator = Collator(processor, recipe.data, demo_data, train=True)
    cache = tmp_path / "lb.json"
    length_budget(samples, collator, 256, 0, cache, "key-1", where="train")
    stored = json.loads(cache.read_text())
    stored["summary"]["samples"] = -1  # edited, digest left as it was
    cache.write_text(json.dumps(stored))
    assert length_budget(samples, collator, 256, 0, cache, "key-1", where="train")["samples"] == len(samples)
    assert "does not match its sha256" in capfd.readouterr().err
    assert json.loads(cache.read_text())["summary"]["samples"] == len(samples)  # rewritten whole


def test_answers_that_will_be_cut_are_counted(demo_data, processor_and_recipe, tmp_path):
    from pefomed.data.collate import Collator
    from pefomed.data.length_budget import length_budget

    recipe, processor = processor_and_recipe
    samples = read_split(demo_data, "train")
    collator = Collator(processor, recipe.data, demo_data, train=True)
    full = length_budget(samples, collator, 256, 0, tmp_path / "a.json", "k", where="train")
    tight = full["prompt_tokens"]["max"] + 1  # every prompt fits; the longer answers do not
    summary = length_budget(samples, collator, tight, 0, tmp_path / "b.json", "k", where="train")
    uncut = [len(collator.append_answer(collator.encode_prompt(s), s.answer, truncate=False)["input_ids"])
             for s in samples]
    assert summary["answers_cut"] == sum(n > tight for n in uncut) >= 1
    assert summary["total_tokens"]["max"] == max(uncut)


@pytest.mark.slow
def test_over_long_prompts_stop_train_before_step_one(long_question_data, tmp_path):
    data, long_ids, n = long_question_data
    run = tmp_path / "run"
    result = subprocess.run(pefomed("train", "tiny-demo", "--data", str(data), "--out", str(run),
                                    "train.max_steps=2", "data.max_length=200"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr
    assert f"2 of {n} samples have a prompt longer than data.max_length=200" in message
    assert all(sample_id in message for sample_id in long_ids)
    assert not (run / "train_log.jsonl").exists() or not (run / "train_log.jsonl").read_text().strip()
    assert not (run / "checkpoints").exists()
    # the verdict is kept: the summary counts all the other samples
    summary = json.loads((run / "length_budget.json").read_text())["summary"]
    assert [entry["id"] for entry in summary["too_long"]] == long_ids


@pytest.mark.slow
def test_a_run_reports_its_budget(demo_data, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(pefomed("train", "tiny-demo", "--data", str(demo_data), "--out", str(run),
                                    "train.max_steps=1", "train.batch_size=2"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "token budget of" in result.stdout + result.stderr
    assert json.loads((run / "length_budget.json").read_text())["summary"]["samples"] > 0
    off = tmp_path / "off"
    result = subprocess.run(pefomed("train", "tiny-demo", "--data", str(demo_data), "--out", str(off),
                                    "train.max_steps=1", "train.batch_size=2", "train.length_prepass=false"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not (off / "length_budget.json").exists()
