import pytest

from pefomed.errors import UserError
from pefomed.recipe import load_recipe, parse_overrides


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_builtin_recipe_loads_and_overrides_apply():
    recipe = load_recipe("tiny-demo", ["train.lr=3e-5", "method.target_modules=[q_proj]", "model.tiny.seed=7"])
    assert recipe.train.lr == 3e-5
    assert recipe.method.target_modules == ["q_proj"]
    assert recipe.model.tiny.seed == 7


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(UserError, match=r"unknown recipe key 'train\.lrr'"):
        load_recipe(write(tmp_path, "train:\n  lrr: 0.1\n"))
    with pytest.raises(UserError, match=r"unknown recipe key 'method\.rank'"):
        load_recipe("tiny-demo", ["method.rank=8"])


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(UserError, match=r"recipe key 'train\.batch_size'"):
        load_recipe(write(tmp_path, "train:\n  batch_size: many\n"))
    with pytest.raises(UserError, match=r"recipe key 'method\.name'"):
        load_recipe("tiny-demo", ["method.name=lorax"])


def test_malformed_yaml_names_the_line(tmp_path):
    with pytest.raises(UserError, match=r"r\.yaml:3: malformed YAML"):
        load_recipe(write(tmp_path, "train:\n  lr: 1\n\tbad: 2\n"))


def test_bad_override_syntax():
    with pytest.raises(UserError, match="expected section.key=value"):
        parse_overrides(["train.lr"])


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe("tiny-demo", ["train.epochs=3"])
    path = write(tmp_path, recipe.to_yaml())
    assert load_recipe(path) == recipe


def test_builtin_recipes_load_by_name_including_subfolders():
    assert load_recipe("pefomed-paper/stage2-vqa-rad").model.kind == "composed"
    with pytest.raises(UserError, match="no built-in recipe named 'nope'"):
        load_recipe("nope")
