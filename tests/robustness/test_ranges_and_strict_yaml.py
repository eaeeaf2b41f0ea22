"""Nothing out of range gets in (issue 21, items 4-6): a recipe value, a YAML file, an infer or
score flag or a study that would crash later, allocate terabytes or run with nonsense is refused
when it is read, with one message naming the key or flag (and the file's line), exit code 2.

Most cases call the library (load_recipe, InferOptions, ScoreOptions, the CLI's main in-process);
a few run the installed `pefomed` console script, side by side, to check the whole path a user
takes (one `error:` line, exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing

import pytest
import yaml
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel

from pefomed.errors import UserError
from pefomed.models.tiny import TINY_MIN_VOCAB
from pefomed.recipe import Recipe, fields_of, load_recipe

PEFOMED = shutil.which("pefomed")


def _refused(overrides: list[str], *says: str, recipe="tiny-demo") -> str:
    with pytest.raises(UserError) as err:
        load_recipe(recipe, overrides)
    message = str(err.value)
    for part in says:
        assert part in message, (overrides, message)
    return message


# ---------------------------------------------------------------- recipe ranges

@pytest.mark.parametrize("override, key", [
    ("model.tiny.heads=0", "model.tiny.heads"),
    ("model.tiny.heads=3", "model.tiny.heads=3 must divide model.tiny.vision_hidden"),
    ("model.tiny.heads=64", "model.tiny.text_hidden / model.tiny.heads = 1 must be even"),
    ("model.tiny.patch_size=0", "model.tiny.patch_size"),
    ("model.tiny.patch_size=64", "model.tiny.patch_size=64 is larger than model.tiny.image_size=32"),
    ("model.tiny.image_size=100000", "model.tiny.image_size"),
    ("model.tiny.image_size=4096", "image tokens per image"),  # 1024 x 1024 patches of 4 px
    ("model.tiny.vocab_size=0", "model.tiny.vocab_size"),
    ("model.tiny.vocab_size=100", "greater than or equal to 261"),
    ("model.tiny.vision_layers=0", "model.tiny.vision_layers"),
    ("model.tiny.seed=-1", "model.tiny.seed"),
    ("model.composed.image_size=100000", "model.composed.image_size"),
    ("model.composed.image_prompt=x", "model.composed.image_prompt 'x' must contain"),
    ("model.name_or_path=''", "model.name_or_path"),
    ("train.seed=-1", "train.seed"),
    ("train.seed=4294967296", "train.seed"),  # numpy.random.seed's limit
    ("train.betas=[2,3]", "train.betas.0"),
    ("train.betas=[0.9,1]", "train.betas.1"),
    ("train.lr=1e308", "train.lr"),
    ("train.lr=11", "train.lr"),
    ("train.epochs=1e300", "train.epochs"),
    ("train.max_steps=1e12", "train.max_steps"),
    ("train.batch_size=1000000", "train.batch_size"),
    ("train.max_grad_norm=-1", "train.max_grad_norm"),
    ("train.weight_decay=-0.1", "train.weight_decay"),
    ("train.min_lr=0.5", "train.min_lr=0.5 is above train.lr"),
    ("train.warmup_start_lr=0.5", "train.warmup_start_lr=0.5 is above train.lr"),
    ("train.num_workers=10000", "train.num_workers"),
    ("train.deepspeed=''", "train.deepspeed"),
    ("method.alpha=0", "method.alpha"),
    ("method.alpha=-32", "method.alpha"),
    ("method.r=100000", "method.r"),
    ("method.target_modules=['']", "method.target_modules.0"),
    ("data.max_length=100000000", "data.max_length"),
    ("data.template_seed=-1", "data.template_seed"),
    ("data.train_split=''", "data.train_split"),
    ("infer.max_new_tokens=100000000", "infer.max_new_tokens"),
    ("infer.num_beams=1000", "infer.num_beams"),
    ("infer.stop=['']", "infer.stop.0"),
    ("infer.seed=-1", "infer.seed"),
])
def test_out_of_range_values_are_refused_naming_the_key(override, key):
    message = _refused([override], key)
    assert message.startswith("override: "), message  # blamed on the override, not the shipped file


def test_full_with_no_parts_and_huge_mix_ratios_are_refused():
    _refused(["method.name=full", "method.full_parts=[]"], "method.full_parts trains nothing")
    _refused(["data.mix=[{dir: a, ratio: 1e300}]"], "data.mix.0.ratio")


def test_values_at_the_bounds_and_the_shipped_recipes_still_load():
    from pefomed.recipe import builtin_recipe_names

    for name in builtin_recipe_names():
        load_recipe(name)
    recipe = load_recipe("tiny-demo", [
        "train.betas=[0, 0.999]", "train.max_grad_norm=0", "train.max_grad_norm=null", "train.lr=10",
        "train.epochs=0.5", "train.seed=4294967295", f"model.tiny.vocab_size={TINY_MIN_VOCAB}",
        "model.tiny.image_size=30", "model.tiny.heads=32", "method.alpha=64", "train.min_lr=2e-3",
        "infer.num_beams=64", "infer.num_return_sequences=64", "infer.stop=['</s>']"])
    assert recipe.train.betas == (0.0, 0.999) and recipe.train.max_grad_norm is None
    assert recipe.train.lr == 10.0 and recipe.model.tiny.vocab_size == TINY_MIN_VOCAB


def test_every_numeric_field_has_a_range_or_a_stated_reason():
    """Each number a recipe takes is bounded on both sides, or listed here with why it is not."""
    no_upper = {  # field: why it has no upper bound
        "TrainSection.max_grad_norm": "any non-negative finite clipping threshold is valid",
        "ComposedConfig.vision_feature_layer": "an index into the encoder's hidden states, known once it loads",
    }
    no_lower = {"ComposedConfig.vision_feature_layer": "negative indices count from the end"}
    missing = []

    def walk(model: type[BaseModel]):
        for name, field in fields_of(model).items():  # the model kinds' keys (model.tiny, ...) too
            annotation = field.annotation
            inner = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
            if isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
                walk(inner[0])
                continue
            if inner[0] not in (int, float) or inner[0] is bool:
                continue
            label = f"{model.__name__}.{name}"
            kinds = {type(m) for m in field.metadata}
            if not kinds & {Ge, Gt} and label not in no_lower:
                missing.append(f"{label}: no lower bound")
            if not kinds & {Le, Lt} and label not in no_upper:
                missing.append(f"{label}: no upper bound")

    walk(Recipe)
    assert not missing, missing


def test_the_tiny_vocab_floor_is_the_tokenizers_own_size():
    from pefomed.models.tiny import train_tokenizer

    # below the floor the byte-level tokenizer keeps its 256 symbols and special tokens anyway
    assert len(train_tokenizer(1)) == len(train_tokenizer(TINY_MIN_VOCAB)) == TINY_MIN_VOCAB


# ---------------------------------------------------------------- strict YAML

def _file(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, overrides, says", [
    ("train:\n  lr: 0.1\n  batch_size: 2\n  lr: 0.2\n", [], [":4: duplicate key 'train.lr' (first given on line 2)"]),
    ("model:\n  tiny:\n    seed: 1\n    seed: 2\n", [], [":4: duplicate key 'model.tiny.seed'"]),
    ('train:\n  lr: "0.002"\n', [], ["recipe key 'train.lr': expected a number", "(line 2)"]),
    ('train:\n  batch_size: "8"\n', [], ["recipe key 'train.batch_size': expected a number", "(line 2)"]),
    ("model:\n  freeze_vision: 1\n", [], ["recipe key 'model.freeze_vision': expected true or false"]),
    ("model:\n  freeze_vision: 'true'\n", [], ["recipe key 'model.freeze_vision': expected true or false"]),
    ("", [], ["the recipe is empty"]),
    ("# nothing but a comment\n", ["train.lr=3e-5"], ["the recipe is empty"]),
    ("[]\n", [], ["a recipe must be a mapping"]),
    ("train:\n  - lr: 0.1\n", ["train.lr=3e-5"], [":1: recipe key 'train' is a section", "not a list"]),
    ("train: 5\n", ["train.lr=3e-5", "train.seed=1"], [":1: recipe key 'train' is a section"]),
    ("model:\n  tiny: [1, 2]\n", ["model.tiny.seed=3"], [":2: recipe key 'model.tiny' is a section"]),
])
def test_strict_yaml_files(tmp_path, text, overrides, says):
    path = _file(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_recipe(path, overrides)
    message = str(err.value)
    assert message.startswith(str(path)), message
    for part in says:
        assert part in message, message


def test_numbers_stay_numbers_and_quoted_text_stays_text(tmp_path):
    # unquoted YAML 1.2 exponents are numbers in a file and in overrides (PyYAML alone reads strings)
    recipe = load_recipe(_file(tmp_path, "train:\n  lr: 3e-5\n  min_lr: 1E-6\n  warmup_start_lr: 0\n"),
                         ["train.weight_decay=1e-2", "infer.temperature=5e-1"])
    assert (recipe.train.lr, recipe.train.min_lr, recipe.train.weight_decay) == (3e-5, 1e-6, 1e-2)
    assert load_recipe("tiny-demo", ["train.lr=3e-5"]).train.lr == 3e-5
    _refused(["train.lr='3e-5'"], "recipe key 'train.lr': expected a number, not a quoted string")
    _refused(["train.lr={a: 1, a: 2}"], "override 'train.lr': duplicate key 'a' in the value")
    # a text that looks like a number is written quoted, so the resolved recipe reads back
    recipe = load_recipe("tiny-demo", ["data.train_split='1e5'"])
    path = _file(tmp_path, recipe.to_yaml())
    assert load_recipe(path) == recipe and recipe.data.train_split == "1e5"
    # a YAML merge key may override what it merges (not a duplicate)
    merged = load_recipe(_file(tmp_path, "train:\n  <<: {lr: 1.0e-3, seed: 3}\n  lr: 2.0e-3\n"))
    assert merged.train.lr == 2e-3 and merged.train.seed == 3


def test_study_file_duplicate_keys_are_refused(tmp_path):
    from pefomed.study.spec import load_study

    path = tmp_path / "s.yaml"
    path.write_text("name: s\nname: t\n")
    with pytest.raises(UserError, match=r"s\.yaml:2: duplicate key 'name' \(first given on line 1\)"):
        load_study(path)
    path.write_text("")
    with pytest.raises(UserError, match="the study file is empty"):
        load_study(path)


# ---------------------------------------------------------------- infer and score flags

@pytest.mark.parametrize("kwargs, says", [
    ({"stop": [""]}, "`stop`: String should have at least 1 character"),
    ({"shots_seed": -1}, "`shots_seed` must be at least 0, got -1"),
    ({"shots": 1000}, "`shots` must be at most 64"),
    ({"num_workers": 10000}, "`num_workers` must be at most 64, got 10000"),
    ({"num_workers": -1}, "`num_workers` must be at least 0"),
    ({"limit_seed": -2}, "`limit_seed` must be at least 0"),
    ({"series_frames": 100000}, "`series_frames` must be at most 64"),
    ({"max_new_tokens": 10**9}, "`max_new_tokens`: Input should be less than or equal to"),
    ({"batch_size": "100000"}, "`batch_size` must be a whole number from 1 to 4096, or 'auto'"),
    ({"batch_size": "many"}, "`batch_size` must be a whole number from 1 to 4096, or 'auto'"),
    ({"num_beams": 1000}, "`num_beams`: Input should be less than or equal to 64"),
    ({"temperature": 1e9}, "`temperature`"),
    ({"top_p": 0.0}, "`top_p`"),
    ({"seed": -1}, "`seed`"),
    ({"report_prompt": "pool:nosuch"}, "`report_prompt`"),
])
def test_infer_options_are_checked_before_anything_loads(kwargs, says):
    """The declared ranges refuse a bad value when the options are made (before any file is read);
    the message names the key, which the CLI spells as infer's flag."""
    from pefomed.options.infer import InferOptions, PromptOptions

    prompting = {k: kwargs.pop(k) for k in ("shots", "shots_seed") if k in kwargs}
    with pytest.raises(UserError) as err:
        InferOptions(prompting=PromptOptions(**prompting), **kwargs)
    assert says in str(err.value), str(err.value)


def test_score_options_have_ranges():
    from pefomed.options.score import ScoreOptions

    for kwargs, says in (({"bootstrap": 10**11}, "`bootstrap` must be <= 1,000,000"),
                         ({"bootstrap": -1}, "must be >= 0"),
                         ({"seed": -1}, "`seed` must be 0 or more"),
                         ({"alpha": 0.0}, "`alpha` must be in (0, 1)"),
                         ({"judge_url": ""}, "`judge_url` must be a non-empty text")):
        with pytest.raises(UserError) as err:
            ScoreOptions.from_kwargs(kwargs)
        assert says in str(err.value), str(err.value)
    ScoreOptions.from_kwargs({"bootstrap": 1_000_000, "seed": 2**63 - 1})


# ---------------------------------------------------------------- study --dry-run

def _study(data_dir, **changes) -> dict:
    study = {
        "name": "ranges",
        "models": [{"name": "a", "source": "tiny-demo"}],
        "data": [{"name": "d", "dir": str(data_dir)}],
        "adaptations": [{"name": "zs", "kind": "zero-shot"},
                        {"name": "fs", "kind": "few-shot", "shots": 1},
                        {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"],
                         "overrides": ["train.max_steps=2"]}],
        "seeds": [0],
    }
    study.update(changes)
    return study


def _dry_run(tmp_path, tree, capsys, *extra) -> tuple[int, str]:
    from pefomed.cli.app import main

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False) if isinstance(tree, dict) else tree)
    out = tmp_path / "out"
    code = main(["study", str(path), "--out", str(out), "--dry-run", *extra])
    said = capsys.readouterr()
    assert not out.exists()
    return code, said.out + said.err


def test_study_dry_run_refuses_what_the_run_would(tmp_path, demo_data, capsys):
    ft = {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"]}
    cases = [
        (_study(demo_data, seeds=[True]), "key 'seeds': expected a number, got true/false"),
        (_study(demo_data, seeds=["0"]), "key 'seeds': expected a number, not a quoted string"),
        (_study(demo_data, seeds=[-1]), "key 'seeds[0]'"),
        (_study(demo_data, adaptations=[{**ft, "overrides": ["train.lrr=1"]}]),
         "adaptation 'ft' (adaptations[0].recipe / overrides, method lora, seed 0): `pefomed train` would refuse "
         "its recipe: override: unknown recipe key 'train.lrr'"),
        (_study(demo_data, adaptations=[{**ft, "overrides": ["model.tiny.heads=3"]}]), "model.tiny.heads=3"),
        (_study(demo_data, models=[{"name": "a", "source": str(tmp_path / "no" / "such" / "model")}]),
         "model 'a' (models[0].source)"),
        (_study(demo_data, models=[{"name": "a", "source": "./missing-run"}]), "model 'a' (models[0].source)"),
        (_study(demo_data, score={"metrics": ["vqa/overal"]}), "key 'score.metrics[0]': 'vqa' has no metric 'overal'"),
        (_study(demo_data, score={"metrics": ["bleu/4"]}), "key 'score.metrics[0]': no section 'bleu'"),
        (_study(demo_data, selection={"metric": "vqa/overall+report/CIDEr"}),
         "key 'selection.metric': 'report' has no metric 'CIDEr'"),
        (_study(demo_data, score={"bootstrap": 10**12}), "key 'score.bootstrap': `bootstrap` "
                                                         "must be <= 1,000,000"),
        (_study(demo_data, score={"alpha": 2}), "key 'score.alpha'"),
        (_study(demo_data, infer={"max_new_tokens": 10**9}), "study keys infer / selection: `pefomed infer` would "
                                                              "refuse them: `max_new_tokens`"),
        (_study(demo_data, selection={"seed": -1}), "key 'selection.seed'"),
        (_study(demo_data, adaptations=[{"name": "fs", "kind": "few-shot", "shots": 1000}]), "`shots` must be at most"),
        (_study(demo_data, adaptations=[{"name": "fs", "kind": "few-shot", "shots": 1,
                                         "prompts": [{"template": "{question}", "shots_seed": -1}]}]),
         "key 'adaptations[0].prompts[0].shots_seed'"),
        (_study(demo_data, adaptations=[{"name": "zs", "kind": "zero-shot",
                                         "prompts": [{"template": "{question}", "system_prompt": " "}]}]),
         "`system_prompt` must be a non-empty text"),
        ("name: a\nname: b\n", "study.yaml:2: duplicate key 'name'"),
    ]
    for tree, says in cases:
        code, said = _dry_run(tmp_path, tree, capsys)
        errors = [line for line in said.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and "Traceback" not in said, (says, said[-2000:])
        assert says in said, (says, said[-2000:])
    for gpus, says in (("abc", "--gpus: 'abc' is not a GPU id"), ("0,0", "--gpus: a GPU is listed twice")):
        code, said = _dry_run(tmp_path, _study(demo_data), capsys, "--gpus", gpus)
        assert code == 2 and says in said, said
    # and the same study, valid, plans (GPU UUIDs are ids too)
    code, said = _dry_run(tmp_path, _study(demo_data), capsys, "--gpus", "0,GPU-8a1b2c3d-0000-1111-2222-333344445555")
    assert code == 0, said


# ---------------------------------------------------------------- the installed console script

@pytest.mark.skipif(PEFOMED is None, reason="the pefomed console script is not installed")
def test_the_console_script_exits_2_with_one_message(tmp_path, demo_data):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"id": "q0", "images": ["i.png"], "question": "?", "prediction": "yes",
                                "reference": "yes", "answer_type": "closed", "task": "vqa"}) + "\n")
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  lr: 1.0e-4\n  lr: 2.0e-4\n")
    out = str(tmp_path / "p.jsonl")
    runs = {
        "heads": (["train", "tiny-demo", "--data", str(demo_data), "--out", str(tmp_path / "r"), "model.tiny.heads=3"],
                  "model.tiny.heads=3 must divide"),
        "duplicate": (["train", str(dup), "--data", str(demo_data), "--out", str(tmp_path / "r2")],
                      f"{dup}:3: duplicate key 'train.lr'"),
        "stop": (["infer", "tiny-demo", "--data", str(demo_data), "--out", out, "--stop", ""],
                 "--stop: String should have at least 1 character"),
        "workers": (["infer", "tiny-demo", "--data", str(demo_data), "--out", out, "--workers", "10000",
                     "--shots-seed", "3"], "--workers must be at most 64"),
        "bootstrap": (["score", str(pred), "--bootstrap", "100000000000"],
                      "--bootstrap must be <= 1,000,000"),
    }
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    procs = {name: subprocess.Popen([PEFOMED, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env, cwd=tmp_path) for name, (argv, _) in runs.items()}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=180)
        said = stdout + stderr
        errors = [line for line in said.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in said, (name, said[-2000:])
        assert runs[name][1] in said, (name, said[-2000:])
    assert not (tmp_path / "r").exists() and not (tmp_path / "p.jsonl").exists()
