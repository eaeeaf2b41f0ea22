"""Library errors name keys; only cli/ spells a key as the flag of the command the user typed
(pefomed.errors.UserError.naming_flags). A setting that is a flag in one command and a recipe key or
an environment variable in another is named as what it is for each caller."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from PIL import Image

from pefomed.errors import UserError

PEFOMED = shutil.which("pefomed")
needs_cli = pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")


def _run(*args, env=None):
    import os

    return subprocess.run([PEFOMED, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_keys_become_the_flags_of_the_command_and_stay_keys_elsewhere():
    error = UserError("infer.num_return_sequences=3 is more than infer.num_beams=2",
                      hint="raise infer.num_beams to 3", keys=["infer.num_return_sequences", "infer.num_beams"])
    flags = {"num_beams": "--num-beams", "num_return_sequences": "--num-return-sequences"}
    assert error.naming_flags(flags) == "--num-return-sequences=3 is more than --num-beams=2\n  hint: raise --num-beams to 3"
    assert error.naming_flags({}) == str(error)  # no such flag (training's evaluation): the recipe keys


def test_generation_checks_name_recipe_keys_for_training_callers():
    from pefomed.models.generation import check_return_sequences

    for args in ((3, 2, False), (3, 1, False)):
        with pytest.raises(UserError) as caught:
            check_return_sequences(*args)
        assert "--" not in str(caught.value) and "infer.num_beams" in str(caught.value)


@needs_cli
def test_infer_spells_the_generation_keys_as_its_flags(tmp_path, demo_data):
    result = _run("infer", "tiny-demo", "--data", demo_data, "--num-return-sequences", 3, "--limit", 2,
                  "--out", tmp_path / "p.jsonl")
    assert result.returncode == 2, result.stderr + result.stdout
    assert "--num-beams to 3" in result.stderr and "--temperature" in result.stderr
    assert "infer.num_beams" not in result.stderr and "Traceback" not in result.stderr + result.stderr


@needs_cli
def test_the_image_limit_is_a_flag_in_prepare_and_an_environment_variable_in_infer(tmp_path):
    big = tmp_path / "scans"
    big.mkdir()
    Image.new("RGB", (64, 64)).save(big / "a.png")
    (big / "a.txt").write_text("no acute findings")
    small_limit = {"PEFOMED_MAX_IMAGE_PIXELS": "100"}

    prepared = _run("prepare", big, "--format", "folder", "--out", tmp_path / "data", "--max-image-pixels", 100)
    assert prepared.returncode == 2 and "raise --max-image-pixels" in prepared.stderr, prepared.stderr
    assert "--skip-bad" in prepared.stderr and "skip_bad" not in prepared.stderr

    inferred = _run("infer", "tiny-demo", "--images", big, "--question", "Is there a mass?",
                    "--out", tmp_path / "p.jsonl", env=small_limit)
    assert inferred.returncode == 2, inferred.stderr
    assert "PEFOMED_MAX_IMAGE_PIXELS" in inferred.stderr and "--max-image-pixels" not in inferred.stderr
    assert "Traceback" not in inferred.stderr + inferred.stderr
