"""Ablation adaptations in a study (`kind: ablation`, `of:`, `image:`) and the report's visual-reliance
lines: validation names the key; the plan repeats the reference's model, prompt and closed-answer
mode (a fine-tune's trained run, once that cell is done); a real tiny study runs to a report whose
visual-reliance difference is the paired comparison `pefomed score --compare` gives by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pefomed.errors import UserError
from pefomed.study.spec import parse_study

sys.path.insert(0, str(Path(__file__).parent))
from study_fixtures import small_data

CLI = [sys.executable, "-m", "pefomed.cli.app"]
ZS = {"name": "zs", "kind": "zero-shot"}
FT = {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"]}


def _tree(*adaptations):
    return {"name": "s", "models": [{"name": "m", "source": "tiny-demo"}], "data": [{"name": "d", "dir": "x"}],
            "adaptations": [ZS, FT, *adaptations]}


@pytest.mark.parametrize("adaptation, message", [
    ({"name": "x", "kind": "ablation", "image": "blank"}, "key 'adaptations[2].of': an ablation adaptation names"),
    ({"name": "x", "kind": "ablation", "of": "zs"}, "key 'adaptations[2].image'"),
    ({"name": "x", "kind": "ablation", "of": "zs", "image": "noise"}, "key 'adaptations[2].image'"),
    ({"name": "x", "kind": "ablation", "of": "nope", "image": "blank"}, "key 'adaptations[2].of': 'nope'"),
    ({"name": "x", "kind": "ablation", "of": "zs", "image": "blank", "prompts": "builtin:vqa"},
     "key 'adaptations[2].prompts'"),
    ({"name": "x", "kind": "zero-shot", "image": "blank"}, "key 'adaptations[2].image': only an ablation"),
    ({"name": "x", "kind": "ablation", "of": "zs", "image": "shuffled", "methods": ["lora"]},
     "key 'adaptations[2].methods'"),
])
def test_a_bad_ablation_is_one_error_naming_the_key(adaptation, message):
    with pytest.raises(UserError) as err:
        parse_study(_tree(adaptation), "study.yaml")
    assert message in str(err.value)


def test_an_ablation_of_another_control_is_refused():
    blind = {"name": "b", "kind": "blind", "of": "zs"}
    with pytest.raises(UserError, match=r"key 'adaptations\[3\].of': 'b' is not a zero-shot, few-shot or fine-tune"):
        parse_study(_tree(blind, {"name": "x", "kind": "ablation", "of": "b", "image": "blank"}), "study.yaml")


@pytest.fixture(scope="module")
def ran(tmp_path_factory, demo_data):
    """1 tiny model x (zero-shot, blank and shuffled ablations of it, blind, fine-tune lora with
    max_steps 1 and a mismatched ablation of it) x 1 seed, run through `pefomed study`."""
    tmp = tmp_path_factory.mktemp("ablation-study")
    data = small_data(demo_data, tmp / "data", train=8, val=4, test=12)
    study = {
        "name": "ablations",
        "models": [{"name": "a", "source": "tiny-demo"}],
        "data": [{"name": "mini", "dir": str(data)}],
        "adaptations": [
            {"name": "mis-ft", "kind": "ablation", "of": "ft", "image": "mismatched"},  # listed before its reference
            {"name": "zero-shot", "kind": "zero-shot", "closed_answer": "rank"},
            {"name": "blank", "kind": "ablation", "of": "zero-shot", "image": "blank"},
            {"name": "shuffled", "kind": "ablation", "of": "zero-shot", "image": "shuffled"},
            {"name": "blind", "kind": "blind", "of": "zero-shot"},
            {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora"], "closed_answer": "rank",
             "overrides": ["train.max_steps=1", "train.batch_size=4"]}],
        "seeds": [3],
        "score": {"bootstrap": 100},
    }
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    dry = subprocess.run([*CLI, "study", str(path), "--out", str(tmp / "out"), "--dry-run"], capture_output=True,
                         text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    done = subprocess.run([*CLI, "study", str(path), "--out", str(tmp / "out")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return {"out": tmp / "out", "data": data, "dry": dry.stdout}


def _cells(out: Path) -> dict[str, dict]:
    units = [json.loads(p.read_text()) for p in out.glob("cells/*/unit.json")]
    return {u["adaptation"]: u for u in units}


def test_ablation_cells_repeat_their_reference(ran):
    out, cells = ran["out"], _cells(ran["out"])
    infer = {name: next(s["argv"] for s in u["steps"] if s["name"] == "infer") for name, u in cells.items()}
    reference = infer["zero-shot"]
    assert infer["blank"][:len(reference)] == reference  # same source, data, prompt, closed-answer mode
    assert infer["blank"][len(reference):] == ["--image-ablation", "blank"]  # no seed: blank draws nothing
    assert infer["shuffled"][len(reference):] == ["--image-ablation", "shuffled", "--image-ablation-seed", "3"]
    assert cells["blank"]["seed"] is None and cells["shuffled"]["seed"] == 3
    ft, mis = cells["ft"], cells["mis-ft"]
    assert mis["after"] == ft["id"] and mis["method"] == "lora" and mis["seed"] == 3
    assert infer["mis-ft"][:2] == ["infer", f"../{ft['id']}/run"]
    assert infer["mis-ft"][2:] == [*infer["ft"][2:], "--image-ablation", "mismatched", "--image-ablation-seed", "3"]
    assert f"waits for cell {ft['id']}" in ran["dry"]  # before the run: it needs the trained run
    rows = [json.loads(line) for line in (out / mis["folder"] / "pred.jsonl").read_text().splitlines()]
    organs = {}
    for line in (ran["data"] / "test.jsonl").read_text().splitlines():
        sample = json.loads(line)
        organs[tuple(sample["images"])] = sample["meta"]["organ"]
    assert rows and all(organs[tuple(r["shown_images"])] != r["meta"]["organ"] for r in rows)
    settings = json.loads((out / mis["folder"] / "pred.settings.json").read_text())
    assert settings["model"]["kind"] == "run" and settings["prompt"]["closed_answer"] == "rank"


def test_visual_reliance_is_the_paired_comparison_with_the_reference(ran, tmp_path):
    from pefomed.score.run import score_files

    out, cells = ran["out"], _cells(ran["out"])
    report = json.loads((out / "study.json").read_text())
    lines = {(v["control"], v["reference"]): v for v in report["visual_reliance"]}
    assert set(lines) == {("blank", "zero-shot"), ("shuffled", "zero-shot"), ("blind", "zero-shot"),
                          ("mis-ft", "ft")}
    for (control, reference), line in lines.items():
        by_hand = score_files([out / cells[reference]["folder"] / "pred.jsonl"],
                              compare=[out / cells[control]["folder"] / "pred.jsonl"], bootstrap=100)
        expected = by_hand["compare"]["sections"]["vqa"]["overall"]
        e = line["metrics"]["vqa/overall"]
        assert e["difference"] == pytest.approx(expected["value"])
        assert (e["ci_low"], e["ci_high"]) == pytest.approx((expected["ci_low"], expected["ci_high"]))
        assert e["difference"] == pytest.approx(e["with_image"] - e["control"])
        if e["with_image"]:
            assert e["retained"] == pytest.approx(e["control"] / e["with_image"])
    assert lines[("blind", "zero-shot")]["image"] == "none (blind)" and lines[("mis-ft", "ft")]["method"] == "lora"
    md, page = (out / "study.md").read_text(), (out / "study.html").read_text()
    assert "## Visual reliance" in md and "| mini | a | lora | ft | mis-ft | mismatched | vqa/overall |" in md
    assert "<h2>Visual reliance" in page and "<td>mis-ft</td>" in page
