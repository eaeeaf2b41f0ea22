"""A model kind is a plug-in: tests/models/toy_kind.py (a kind written outside pefomed: its recipe
section and its loader in one module) becomes `model.kind: toy` through one entry point
(`pefomed.model_kinds: toy = toy_kind:TOY`, here in a dist-info folder on PYTHONPATH, as an
installed package would declare it), with no edit to pefomed. Then a recipe naming it validates,
reads back from its resolved YAML, loads a real (tiny) model, lists it among the kinds, and
refuses a key the kind does not have by name; `pefomed train` runs it and RUN_DIR/recipe.yaml keeps
its keys. Without the entry point nothing knows the kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pefomed.errors import UserError
from pefomed.recipe import load_recipe

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    site = tmp_path_factory.mktemp("toy-plugin")
    info = site / "pefomed_toy_kind-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pefomed-toy-kind\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pefomed.model_kinds]\ntoy = toy_kind:TOY\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(HERE)])}


def test_without_its_entry_point_no_recipe_knows_the_kind():
    with pytest.raises(UserError) as err:
        load_recipe("tiny-demo", ["model.kind=toy"])
    assert "recipe key 'model.kind': Input should be 'tiny', 'hf' or 'composed' (got 'toy')" in str(err.value)
    with pytest.raises(UserError, match=r"unknown recipe key 'model\.toy'"):
        load_recipe("tiny-demo", ["model.toy.layers=2"])


CHECKS = r"""
import json, sys, tempfile, yaml
from pefomed.errors import UserError
from pefomed.recipe import load_recipe, validate_recipe
from pefomed.models.loader import describe_base, load_base, materialize_base

out = {}
recipe = load_recipe("tiny-demo", ["model.kind=toy", "model.toy.layers=2"])
out["toy"] = recipe.model.toy.model_dump()
out["reads_back"] = validate_recipe(yaml.safe_load(recipe.to_yaml())) == recipe
out["dumped_keys"] = list(recipe.model_dump()["model"])
source = materialize_base(recipe.model, tempfile.mkdtemp())
bundle = load_base(source, recipe.model)
out["llm_layers"] = bundle.model.config.text_config.num_hidden_layers
out["describe"] = describe_base(recipe.model)
for name, overrides in {"listing": ["model.kind=nosuch"], "unknown": ["model.kind=toy", "model.toy.layerz=1"],
                        "range": ["model.toy.layers=9"]}.items():
    try:
        load_recipe("tiny-demo", overrides)
        out[name] = None
    except UserError as err:
        out[name] = str(err)
print(json.dumps(out))
"""


def test_one_entry_point_makes_the_kind_validate_load_and_be_listed(plugin_env):
    done = subprocess.run([sys.executable, "-c", CHECKS], env=plugin_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["toy"] == {"layers": 2, "seed": 3} and out["reads_back"]
    assert out["dumped_keys"][:2] == ["kind", "tiny"] and "toy" in out["dumped_keys"]
    assert out["llm_layers"] == 2 and out["describe"] == "the toy model (2 layers)"
    # the built-in kinds first (pefomed's own list), then the plug-in
    assert "recipe key 'model.kind': Input should be 'tiny', 'hf', 'composed' or 'toy' (got 'nosuch')" \
        in out["listing"]
    assert "unknown recipe key 'model.toy.layerz' (did you mean 'model.toy.layers'?)" in out["unknown"]
    assert "recipe key 'model.toy.layers': Input should be less than or equal to 4 (got 9)" in out["range"]


def test_the_cli_refuses_a_key_the_plugin_kind_lacks_by_name(plugin_env, tmp_path):
    done = subprocess.run(["pefomed", "train", "tiny-demo", "--data", str(tmp_path / "none"), "--out",
                           str(tmp_path / "run"), "model.kind=toy", "model.toy.seeds=1"],
                          env=plugin_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "unknown recipe key 'model.toy.seeds' (did you mean 'model.toy.seed'?)" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_pefomed_train_runs_the_plugin_kind_and_records_its_keys(plugin_env, tmp_path):
    """Through the installed CLI: the run builds the toy base from model.toy, trains a step, and
    RUN_DIR/recipe.yaml keeps the plug-in's keys (a later infer or export reads them back)."""
    from pefomed.data.synthetic import write_bright_spot_dataset

    data = write_bright_spot_dataset(tmp_path / "data", n_train=4, n_test=1)
    run = tmp_path / "run"
    done = subprocess.run(["pefomed", "train", "tiny-demo", "--data", str(data), "--out", str(run), "model.kind=toy",
                           "model.toy.layers=1", "train.max_steps=1", "train.batch_size=2", "train.eval_every=null"],
                          env=plugin_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import yaml

    saved = yaml.safe_load((run / "recipe.yaml").read_text())["model"]
    assert saved["kind"] == "toy" and saved["toy"] == {"layers": 1, "seed": 3}
    config = json.loads((run / "toy_base" / "config.json").read_text())
    assert config["text_config"]["num_hidden_layers"] == 1
