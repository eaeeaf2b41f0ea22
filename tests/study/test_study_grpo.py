"""GRPO and SFT -> GRPO as fine-tune methods of a study (`objective: grpo`, `init_from:`, `grpo:`):
the study file is checked key by key; the plan's train steps carry the objective, the GRPO settings
and, for SFT -> GRPO, the SFT cell's run of the same seed (waiting for it); a real tiny study runs
through the installed CLI to a report whose SFT / GRPO / base verdicts are Holm-corrected together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pefomed.errors import UserError
from pefomed.study.plan import plan_study
from pefomed.study.spec import load_study, parse_study

sys.path.insert(0, str(Path(__file__).parent))
from study_fixtures import small_data

PEFOMED = str(Path(sys.executable).with_name("pefomed"))
ZS = {"name": "zs", "kind": "zero-shot"}
SFT = {"name": "sft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"]}
GRPO = {"name": "grpo", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"], "objective": "grpo"}


def _tree(*adaptations):
    return {"name": "s", "models": [{"name": "m", "source": "tiny-demo"}], "data": [{"name": "d", "dir": "x"}],
            "adaptations": [ZS, SFT, *adaptations]}


def _with(base: dict, **changes) -> dict:
    return {**base, **changes}


@pytest.mark.parametrize("adaptation, message", [
    (_with(ZS, name="x", objective="grpo"), "key 'adaptations[2].objective': only a fine-tune adaptation"),
    (_with(ZS, name="x", init_from="sft"), "key 'adaptations[2].init_from': only a fine-tune adaptation"),
    (_with(SFT, name="x", grpo={"beta": 0}), "key 'adaptations[2].grpo': GRPO settings need objective: grpo"),
    (_with(GRPO, grpo={"num_generation": 4}), "key 'adaptations[2].grpo.num_generation': unknown key"),
    (_with(GRPO, grpo={"num_generations": 1}), "key 'adaptations[2].grpo.num_generations'"),
    (_with(GRPO, grpo={"beta": "0.1"}), "key 'adaptations[2].grpo.beta'"),
    (_with(GRPO, objective="ppo"), "key 'adaptations[2].objective'"),
    (_with(GRPO, init_from="nope"), "key 'adaptations[2].init_from': 'nope' is not another fine-tune"),
    (_with(GRPO, init_from="zs"), "key 'adaptations[2].init_from': 'zs' is not another fine-tune"),
    (_with(GRPO, init_from="grpo"), "key 'adaptations[2].init_from': 'grpo' is not another fine-tune"),
    (_with(GRPO, methods=["dora"], init_from="sft"), "key 'adaptations[2].init_from': 'sft' trains no 'dora' run"),
    (_with(GRPO, overrides=["train.objective=sft"]),
     "key 'adaptations[2].objective' and 'adaptations[2].overrides' both set train.objective"),
    (_with(GRPO, grpo={"beta": 0}, overrides=["train.grpo.beta=0.1"]),
     "key 'adaptations[2].grpo' and 'adaptations[2].overrides' both set train.grpo"),
    (_with(GRPO, init_from="sft", overrides=["train.init_from=/runs/x"]),
     "key 'adaptations[2].init_from' and 'adaptations[2].overrides' both set train.init_from"),
    # #22: a blind or ablation adaptation answers closed questions as its reference; its own key was ignored
    ({"name": "x", "kind": "blind", "of": "zs", "closed_answer": "rank"},
     "key 'adaptations[2].closed_answer': a blind adaptation answers closed questions as 'zs' does"),
    ({"name": "x", "kind": "ablation", "of": "sft", "image": "blank", "closed_answer": "generate"},
     "key 'adaptations[2].closed_answer': an ablation adaptation answers closed questions as 'sft' does"),
])
def test_a_bad_rl_adaptation_is_one_error_naming_the_study_file_and_key(adaptation, message):
    with pytest.raises(UserError) as err:
        parse_study(_tree(adaptation), "my-study.yaml")
    assert str(err.value).startswith("my-study.yaml: ") and message in str(err.value)


def test_an_init_from_loop_is_refused():
    a = _with(GRPO, name="a", init_from="b")
    b = _with(GRPO, name="b", init_from="a")
    with pytest.raises(UserError, match=r"key 'adaptations\[2\].init_from': the init_from chain of 'a' loops"):
        parse_study(_tree(a, b), "study.yaml")


def test_what_grpo_refuses_in_the_whole_recipe_is_refused_when_planning(tmp_path, demo_data):
    """The cross-key rules of train.grpo (some reward) and GRPO's own refusals (here the feature
    cache) need the whole recipe: the plan loads it, as `pefomed train` will."""
    data = small_data(demo_data, tmp_path / "data", train=4, val=2, test=2)
    for adaptation, key in ((_with(GRPO, grpo={"answer_reward": 0}), "train.grpo.answer_reward"),
                            (_with(GRPO, overrides=["train.feature_cache=true"]), "train.feature_cache")):
        tree = {**_tree(adaptation), "data": [{"name": "d", "dir": str(data)}]}
        with pytest.raises(UserError) as err:
            plan_study(parse_study(tree, "study.yaml"), tmp_path)
        said = str(err.value)
        assert "adaptations[2].recipe / overrides / objective" in said and "`pefomed train` would refuse" in said
        assert key in said


def _study(folder: Path, data: Path, seeds=(0,), max_steps: int = 2) -> Path:
    """zero-shot (the base) x SFT x GRPO x SFT -> GRPO on the tiny model, plus a blank-image ablation
    of SFT -> GRPO; comparisons: every adaptation vs the base, and vs SFT."""
    steps = [f"train.max_steps={max_steps}", "train.batch_size=4"]
    rl = {"num_generations": 2, "max_new_tokens": 3, "beta": 0.0, "temperature": 1.5}
    study = {
        "name": "rl-vs-sft",
        "models": [{"name": "tiny", "source": "tiny-demo"}],
        "data": [{"name": "mini", "dir": str(data)}],
        "adaptations": [
            {"name": "blank-sft-grpo", "kind": "ablation", "of": "sft-grpo", "image": "blank"},  # before its reference
            {"name": "sft-grpo", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"], "objective": "grpo",
             "init_from": "sft", "grpo": rl, "overrides": steps, "closed_answer": "rank"},  # before its first stage
            {"name": "base", "kind": "zero-shot", "closed_answer": "rank"},
            {"name": "sft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"], "overrides": steps,
             "closed_answer": "rank"},
            {"name": "grpo", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"], "objective": "grpo",
             "grpo": rl, "overrides": steps, "closed_answer": "rank"}],
        "seeds": list(seeds),
        "comparisons": [{"kind": "adaptation", "reference": "base"}, {"kind": "adaptation", "reference": "sft"}],
        "score": {"bootstrap": 100},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _train(cell) -> list[str]:
    """The recipe overrides of the cell's `pefomed train` step (in its argv, in this order)."""
    argv = next(s.argv for s in cell.steps if s.name == "train")
    overrides = cell.definition["overrides"]
    assert any(argv[i:i + len(overrides)] == overrides for i in range(len(argv))), (argv, overrides)
    return overrides


def test_the_plan_trains_grpo_from_the_sft_cell_of_each_seed(tmp_path, demo_data):
    from pefomed.study.report import _pairs

    data = small_data(demo_data, tmp_path / "data", train=4, val=2, test=2)
    path = _study(tmp_path, data, seeds=(0, 1))
    _, cells = plan_study(*load_study(path))
    by = {(c.adaptation, c.seed): c for c in cells}
    assert len(cells) == len(by) == 9 and set(by) == {(a, s) for a in ("sft", "grpo", "sft-grpo", "blank-sft-grpo")
                                                      for s in (0, 1)} | {("base", None)}
    for seed in (0, 1):
        sft, grpo, both, blank = (by[(a, seed)] for a in ("sft", "grpo", "sft-grpo", "blank-sft-grpo"))
        tail = ["method.name=lora", f"train.seed={seed}"]
        grpo_keys = ["train.objective=grpo", "train.grpo.num_generations=2", "train.grpo.max_new_tokens=3",
                     "train.grpo.beta=0.0", "train.grpo.temperature=1.5"]
        steps = ["train.max_steps=2", "train.batch_size=4"]
        assert _train(sft)[-4:] == [*steps, *tail] and not any("objective" in a or "init_from" in a
                                                               for a in _train(sft))
        assert _train(grpo)[-9:] == [*steps, *grpo_keys, *tail] and not any("init_from" in a for a in _train(grpo))
        # SFT -> GRPO: the SFT cell of the same seed, its RUN_DIR from this cell's folder; it waits for that cell
        assert _train(both)[-10:] == [*steps, *grpo_keys, f"train.init_from=../{sft.id}/run", *tail]
        assert (tmp_path / "out" / both.folder / ".." / sft.id / "run").resolve() == \
            (tmp_path / "out" / sft.folder / "run").resolve()
        assert both.after == sft.id and sft.after is None and grpo.after is None
        assert both.definition["init_from_cell"] == sft.id
        # an ablation of SFT -> GRPO infers with that cell's run, after it
        assert blank.after == both.id and blank.steps[0].argv[1] == f"../{both.id}/run"
    # a changed SFT cell is a new SFT -> GRPO cell too (its id covers the run it starts from)
    tree = yaml.safe_load(path.read_text())
    tree["adaptations"][3]["overrides"] = ["train.max_steps=3", "train.batch_size=4"]
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    _, changed = plan_study(*load_study(path))
    again = {(c.adaptation, c.seed): c.id for c in changed}
    assert again[("sft-grpo", 0)] != by[("sft-grpo", 0)].id and again[("grpo", 0)] == by[("grpo", 0)].id
    # the comparisons: each of SFT, GRPO, SFT -> GRPO vs the base, and each RL cell vs SFT; base vs SFT is
    # the reverse of SFT vs base (one test, once in the Holm family)
    groups = {c.group: [c] for c in cells}
    pairs = [(p["a"][2], p["b"][2]) for p in _pairs(load_study(path)[0], groups)]
    assert len(pairs) == len(set(pairs)) == 7 and set(pairs) == {
        ("sft", "base"), ("grpo", "base"), ("sft-grpo", "base"), ("blank-sft-grpo", "base"),
        ("grpo", "sft"), ("sft-grpo", "sft"), ("blank-sft-grpo", "sft")}


def test_dry_run_shows_the_sft_grpo_cell_waiting_for_its_sft_cell(tmp_path, demo_data):
    data = small_data(demo_data, tmp_path / "data", train=4, val=2, test=2)
    path = _study(tmp_path, data)
    dry = subprocess.run([PEFOMED, "study", str(path), "--out", str(tmp_path / "out"), "--dry-run"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert dry.returncode == 0, dry.stdout + dry.stderr
    _, cells = plan_study(*load_study(path))
    sft = next(c for c in cells if c.adaptation == "sft")
    assert f"waits for cell {sft.id}" in dry.stdout and f"train.init_from=../{sft.id}/run" in dry.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_tiny_rl_study_runs_to_paired_holm_verdicts(tmp_path, demo_data):
    """SFT, SFT -> GRPO (1 step each) and the untuned base, 1 seed, through `pefomed study`."""
    from pefomed.score.stats import holm

    data = small_data(demo_data, tmp_path / "data", train=8, val=4, test=12)
    path = _study(tmp_path, data, max_steps=1)
    # GRPO from the base and the ablation are planned like these (the plan test); left out of the run to keep it short
    tree = yaml.safe_load(path.read_text())
    tree["adaptations"] = [a for a in tree["adaptations"] if a["name"] in ("sft-grpo", "base", "sft")]
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    out = tmp_path / "out"
    done = subprocess.run([PEFOMED, "study", str(path), "--out", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    units = {u["adaptation"]: u for u in (json.loads(p.read_text()) for p in out.glob("cells/*/unit.json"))}
    # each run is what its cell says: the objective, and SFT -> GRPO started from the SFT cell's run
    for name, objective in (("sft", "sft"), ("sft-grpo", "grpo")):
        run = out / units[name]["folder"] / "run"
        recipe = yaml.safe_load((run / "recipe.yaml").read_text())
        assert recipe["train"]["objective"] == objective
        rows = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
        assert any("reward_mean" in r for r in rows) == (objective == "grpo")
    started = yaml.safe_load((out / units["sft-grpo"]["folder"] / "run" / "recipe.yaml").read_text())
    assert (out / units["sft-grpo"]["folder"] / started["train"]["init_from"]).resolve() == \
        (out / units["sft"]["folder"] / "run").resolve()
    report = json.loads((out / "study.json").read_text())
    pairs = {(c["a"]["label"], c["b"]["label"]): c for c in report["comparisons"]}
    assert set(pairs) == {("tiny · sft-grpo (lora)", "tiny · base"), ("tiny · sft (lora)", "tiny · base"),
                          ("tiny · sft-grpo (lora)", "tiny · sft (lora)")}  # base vs SFT: the reverse of one made
    entries = [c["metrics"]["vqa/overall"] for c in report["comparisons"]]
    # one Holm family over the three comparisons of the metric, paired on the same test questions
    assert [e["p_holm"] for e in entries] == pytest.approx(holm([e["p_value"] for e in entries]))
    for e in entries:
        assert e["verdict_holm"] in ("win", "tie", "loss")
    md = (out / "study.md").read_text()
    assert "| tiny · sft-grpo (lora) | tiny · sft (lora) | vqa/overall |" in md
