"""Study files are validated strictly; plans are deterministic; selection picks the best, ties first."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from pefomed.errors import UserError
from pefomed.study.plan import plan_study
from pefomed.study.spec import load_study, parse_study

sys.path.insert(0, str(Path(__file__).parent))
from study_fixtures import small_data, write_study

MINIMAL = {"name": "s", "models": [{"name": "m", "source": "tiny-demo"}], "data": [{"name": "d", "dir": "x"}],
           "adaptations": [{"name": "zs", "kind": "zero-shot"}]}


def _with(**changes):
    tree = json.loads(json.dumps(MINIMAL))
    tree.update(changes)
    return tree


@pytest.mark.parametrize("tree, message", [
    (_with(modles=[]), "unknown key 'modles'"),
    (_with(models=[{"name": "m", "source": "tiny-demo", "colour": 1}]), "unknown key 'models[0].colour'"),
    (_with(seeds="zero"), "key 'seeds'"),
    (_with(adaptations=[{"name": "zs", "kind": "one-shot"}]), "key 'adaptations[0].kind'"),
    (_with(models=[{"name": "m", "source": "tiny-demo", "base": "nope"}]), "key 'models[0].base': no model named 'nope'"),
    (_with(adaptations=[{"name": "ft", "kind": "fine-tune", "methods": ["lora"]}]), "key 'adaptations[0].recipe'"),
    (_with(adaptations=[{"name": "k", "kind": "few-shot"}]), "key 'adaptations[0].shots'"),
    (_with(adaptations=[{"name": "b", "kind": "blind", "of": "zs"}]), "key 'adaptations[0].of'"),
    (_with(adaptations=[{"name": "zs", "kind": "zero-shot", "prompts": "builtin:nope"}]), "unknown built-in pool"),
    (_with(adaptations=[{"name": "zs", "kind": "zero-shot", "prompts": [{"template": "no placeholder"}]}]),
     "key 'adaptations[0].prompts[0].template': `template`: template 'no placeholder' has no {question}"),
    (_with(prompts={"p": [{"template": "{question} {x}"}]}, adaptations=[{"name": "zs", "kind": "zero-shot", "prompts": "p"}]),
     "key 'prompts.p[0].template': `template`: template '{question} {x}' is not valid"),
    (_with(comparisons=[{"kind": "method", "reference": "lora"}]), "key 'comparisons[0].reference'"),
    (_with(comparisons=[{"kind": "base"}]), "no model names a base"),
    (_with(models=[{"name": "m", "source": "tiny-demo"}, {"name": "m", "source": "x"}]), "'models[1].name': 'm' is used twice"),
])
def test_a_bad_study_file_is_one_error_naming_the_key(tree, message):
    with pytest.raises(UserError) as err:
        parse_study(tree, "study.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("study.yaml: ")


def test_cli_exits_2_on_a_wrong_type_naming_the_key(tmp_path, capsys):
    from pefomed.cli.app import main

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_with(adaptations=[{"name": "zs", "kind": "zero-shot", "shots": "three"}])))
    assert main(["study", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    said = capsys.readouterr()
    assert "adaptations[0].shots" in said.out + said.err
    assert not (tmp_path / "out").exists()


def test_dry_run_lists_every_cell_with_deterministic_ids_and_runs_nothing(tmp_path, demo_data):
    import subprocess

    data = small_data(demo_data, tmp_path / "data")
    study = write_study(tmp_path, data)
    out = tmp_path / "study-out"
    done = subprocess.run([sys.executable, "-m", "pefomed.cli.app", "study", str(study), "--out", str(out), "--dry-run"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert not out.exists()
    selections, cells = plan_study(*load_study(study))
    # 2 models x (zero-shot once + 2 methods x 2 seeds); zero-shot is greedy, so it runs once
    assert len(cells) == 2 * (1 + 2 * 2) and len(selections) == 2
    for unit in selections + cells:
        assert unit.id in shown
    assert "pefomed train tiny-demo" in shown and "method.name=ia3 train.seed=1" in shown
    # same file, same ids; a changed override is a different cell (never a stale one reused)
    assert [c.id for c in plan_study(*load_study(study))[1]] == [c.id for c in cells]
    tree = yaml.safe_load(study.read_text())
    tree["adaptations"][1]["overrides"] = ["train.max_steps=3", "train.batch_size=4"]
    study.write_text(yaml.safe_dump(tree))
    changed = {c.id for c in plan_study(*load_study(study))[1]}
    ft_ids = {c.id for c in cells if c.adaptation == "ft"}
    assert ft_ids.isdisjoint(changed) and {c.id for c in cells if c.adaptation == "zero-shot"} <= changed


def test_selection_keeps_the_best_candidate_and_the_first_of_a_tie(tmp_path):
    from pefomed.io import write_json
    from pefomed.study.plan import Unit
    from pefomed.study.runner import choose

    def unit(values):
        for i, v in enumerate(values):
            write_json(tmp_path / f"c{i}" / "metrics.json", {"vqa": {"overall": {"value": v, "n": 10}}})
        return Unit("selection", "sel", "d", "m", "zs", None, None, "vqa", "", candidates=[
            {"name": f"p{i}", "template": "{question}"} for i in range(len(values))], metric="vqa/overall",
            definition={"split": "val", "limit": None, "limit_seed": 0})

    assert choose(unit([0.2, 0.5, 0.4]), tmp_path)["chosen"]["name"] == "p1"
    picked = choose(unit([0.3, 0.5, 0.5]), tmp_path)
    assert picked["chosen"]["name"] == "p1"
    assert [c["value"] for c in picked["candidates"]] == [0.3, 0.5, 0.5]


def test_builtin_pools_are_valid_candidates():
    from pefomed.study.pools import POOLS
    from pefomed.study.spec import Candidate

    for name, pool in POOLS.items():
        for candidate in pool:
            c = Candidate.model_validate(candidate)
            if c.template is not None:
                assert "{question}" in c.template
        tree = _with(adaptations=[{"name": "zs", "kind": "zero-shot", "prompts": f"builtin:{name}"}])
        parse_study(tree, "s.yaml")


def test_cluster_options_are_checked_by_submitit(tmp_path):
    pytest.importorskip("submitit")
    from pefomed.study.cluster import make_executor

    executor = make_executor("local", tmp_path, ["timeout_min=5"])
    assert executor.cluster == "local"
    with pytest.raises(UserError, match="`cluster_option`"):
        make_executor("local", tmp_path, ["bogus_key=1"])
    with pytest.raises(UserError, match="key=value"):
        make_executor("local", tmp_path, ["timeout_min"])
