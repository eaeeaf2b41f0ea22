"""Recipe mistakes name their source: an override typed on the command line is blamed on the
override (with a did-you-mean), not on the shipped recipe file; an unknown recipe name lists the
built-in recipes; help shows examples on their own lines and flags without a <bool> metavar."""

from __future__ import annotations

import pytest

from pefomed.cli.app import main
from pefomed.errors import UserError
from pefomed.recipe import builtin_recipe_names, load_recipe


def test_an_unknown_override_key_is_the_overrides_fault_with_a_suggestion():
    with pytest.raises(UserError) as err:
        load_recipe("tiny-demo", ["train.lrr=1"])
    assert str(err.value).startswith("override: unknown recipe key 'train.lrr' (did you mean 'train.lr'?)")
    assert "tiny-demo.yaml" not in str(err.value)


def test_a_bad_key_in_the_file_is_the_files_fault(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  lrr: 1\n")
    with pytest.raises(UserError) as err:
        load_recipe(path, ["method.r=8"])
    assert str(err.value).startswith(f"{path}: unknown recipe key 'train.lrr' (did you mean 'train.lr'?)")


@pytest.mark.parametrize("overrides, message", [
    (["train.scheduler=epoch_cosine"], "override: train.scheduler=epoch_cosine needs train.epoch_steps"),
    (["method.quantize=4bit", "method.name=ia3"], "override: method.quantize=4bit (QLoRA) needs method.name lora"),
])
def test_a_sections_own_check_reads_as_one_sentence(overrides, message):
    with pytest.raises(UserError) as err:
        load_recipe("tiny-demo", overrides)
    assert str(err.value).startswith(message)
    assert "Value error" not in str(err.value) and "{" not in str(err.value)


def test_an_unknown_recipe_name_lists_the_built_in_ones():
    with pytest.raises(UserError) as err:
        load_recipe("tiny-dem")
    assert "tiny-demo" in str(err.value) and "pefomed-paper/stage2-vqa-rad" in str(err.value)
    assert all(not name.startswith("studies/") for name in builtin_recipe_names())


def test_help_keeps_examples_on_their_lines_and_flags_plain(capsys):
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    assert "\n  Examples:\n" in out and "<bool>" not in out and "--merge " in out
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert "Example" not in listing  # the command list shows summaries only


@pytest.mark.parametrize("overrides, says", [
    (["model.freeze_vision=false"], "trains nothing of the vision encoder"),
    (["method.name=full", "method.full_parts=[vision,llm]"], "model.freeze_vision is true"),
])
def test_freeze_vision_must_agree_with_the_method(overrides, says):
    with pytest.raises(UserError, match=says):
        load_recipe("tiny-demo", overrides)
    # and agreeing settings load
    load_recipe("tiny-demo", ["method.name=full", "method.full_parts=[vision]", "model.freeze_vision=false"])
