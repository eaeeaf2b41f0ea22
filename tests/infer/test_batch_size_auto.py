"""`--batch-size auto`: the halving search runs a real probe (the tiny model generating its longest
prompts to the full length) that raises torch.OutOfMemoryError above a size, as a GPU does; on a
machine without CUDA the CLI takes the recipe's batch size and records why; a bad value is one
line and exit 2 from the installed command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image

from pefomed.cli.app import main
from pefomed.errors import UserError
from pefomed.infer.batch_size import AUTO_START, auto_batch_size, largest_fitting, probe
from pefomed.infer.generate import by_prompt_length, make_generator
from pefomed.infer.fewshot import Prompting
from pefomed.models.source import load_source, resolve_source
from pefomed.records import Sample


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auto-images")
    samples = []
    for i in range(12):
        Image.new("RGB", (24, 24), (i * 20, 60, 90)).save(folder / f"x{i:02d}.png")
        # prompt lengths 1..12 words, in shuffled input order
        words = " ".join(["lung"] * (1 + (i * 5) % 12))
        samples.append(Sample(id=f"x{i:02d}", task="vqa", images=[f"x{i:02d}.png"], answer="", question=words))
    recipe, bundle = load_source(resolve_source("tiny-demo"))
    generate = make_generator(recipe, bundle, recipe.data, folder, 4, Prompting())
    return recipe, generate, by_prompt_length(samples, recipe.data, {})


def test_halving_stops_at_the_first_size_that_generates_without_running_out_of_memory(tiny):
    _, generate, ordered = tiny
    real = probe(generate, ordered[::-1], {})
    seen, released = [], []

    def try_batch(size: int):
        seen.append(size)
        if size > 5:  # a GPU with room for 5 of these prompts
            raise torch.OutOfMemoryError(f"CUDA out of memory: a batch of {size}")
        real(size)  # the real probe: the `size` longest prompts, generated to max_new_tokens

    size, tried = largest_fitting(try_batch, 12, release=lambda: released.append(True))
    assert size == 3 and seen == [12, 6, 3] and len(released) == 2
    assert tried == [{"batch_size": 12, "fits": False}, {"batch_size": 6, "fits": False},
                     {"batch_size": 3, "fits": True}]
    assert largest_fitting(real, 4, release=lambda: None) == (4, [{"batch_size": 4, "fits": True}])


def test_not_even_one_fits_is_a_user_error_and_other_errors_pass_through():
    def never(size: int):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(UserError, match=r"tried 4, 2, 1"):
        largest_fitting(never, 4, release=lambda: None)

    def broken(size: int):
        raise RuntimeError("not a memory problem")

    with pytest.raises(RuntimeError, match="not a memory problem"):
        largest_fitting(broken, 8, release=lambda: None)


def test_the_probe_generates_the_longest_prompts(tiny):
    _, generate, ordered = tiny
    longest = probe(generate, ordered[::-1], {})(3)
    by_id = {s.id: s for s in ordered}
    assert [len(by_id[i].question.split()) for i in longest] == [12, 11, 10]


def test_without_cuda_auto_is_the_recipe_batch_size_and_a_resume_keeps_the_choice(tiny):
    recipe, generate, ordered = tiny
    size, record = auto_batch_size(generate, ordered, {}, recipe.infer.batch_size)
    assert size == recipe.infer.batch_size and record["device"] == "cpu" and record["tried"] == []
    previous = {"batch_size": 24, "batch_size_auto": {"device": "cuda", "tried": [{"batch_size": 24, "fits": True}]}}
    assert auto_batch_size(generate, ordered, {}, 16, previous) == (24, previous["batch_size_auto"])
    assert AUTO_START == 256


PEFOMED = shutil.which("pefomed")


def run(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [PEFOMED, *args] if PEFOMED else [sys.executable, "-m", "pefomed.cli.app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_auto_on_cpu_and_a_bad_value(tmp_path, capsys):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 60, 10, 10)).save(folder / f"x{i}.png")
    assert main(["infer", "tiny-demo", "--images", str(folder), "--question", "Normal?", "--out",
                 str(tmp_path / "p.jsonl"), "--batch-size", "auto", "--max-new-tokens", "2"]) == 0
    generation = json.loads((tmp_path / "p.settings.json").read_text())["generation"]
    assert generation["batch_size"] == 16  # tiny-demo's infer.batch_size
    assert generation["batch_size_auto"]["device"] == "cpu" and "no CUDA" in generation["batch_size_auto"]["rule"]
    assert "--batch-size auto: 16 (cpu" in capsys.readouterr().err
    # the installed console script, as a user types it
    bad = run("infer", "tiny-demo", "--images", str(folder), "--out", "q.jsonl", "--batch-size", "lots", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --batch-size must be a whole number from 1 to 4096, or 'auto', got 'lots'"
