"""`pefomed infer` from any model source: a RUN_DIR, its best/ weights, a model folder never
trained here (the zero-shot baseline) or a recipe; the prompt is a flag and is written beside
PRED.jsonl; a .partial from other inputs is refused; remote code needs the flag every time."""

from __future__ import annotations

import json
import shutil

import pytest

from pefomed.cli.app import main
from pefomed.errors import UserError
from pefomed.models.source import resolve_source


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from pefomed.models.tiny import build_tiny
    from pefomed.models.tiny import TinyConfig

    return build_tiny(TinyConfig(), tmp_path_factory.mktemp("tiny-base") / "model")


def rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_sources_are_told_apart(tiny_run, tiny_base, tmp_path):
    assert resolve_source(str(tiny_run)).kind == "run"
    assert resolve_source(str(tiny_base)).kind == "model"
    assert resolve_source("tiny-demo").kind == "recipe"
    assert resolve_source("some-org/some-model").kind == "model"  # a hub id (not loaded here)
    (tmp_path / "r.yaml").write_text("model: {kind: tiny}\n")
    assert resolve_source(str(tmp_path / "r.yaml")).kind == "recipe"
    for bad in (str(tmp_path), str(tmp_path / "missing"), "no-such-builtin"):
        with pytest.raises(UserError):
            resolve_source(bad)


def test_zero_shot_from_a_model_folder_equals_the_same_model_from_its_recipe(tiny_base, demo_data, tmp_path):
    """The base folder and the tiny-demo recipe build the same weights: same answers, and the
    prompt flag reaches both the rows and PRED.settings.json."""
    template = "{question} Answer with a single word or phrase."
    common = ["--data", str(demo_data), "--max-new-tokens", "3", "--template", template]
    assert main(["infer", str(tiny_base), "--out", str(tmp_path / "a.jsonl"), *common]) == 0
    assert main(["infer", "tiny-demo", "--out", str(tmp_path / "b.jsonl"), "--batch-size", "3", *common]) == 0
    a, b = rows(tmp_path / "a.jsonl"), rows(tmp_path / "b.jsonl")
    n_test = sum(1 for _ in open(demo_data / "test.jsonl"))
    assert len(a) == n_test and [r["id"] for r in a] == [r["id"] for r in b]
    # batches are grouped by prompt length, the file is in input order
    assert [r["id"] for r in a] == [json.loads(line)["id"] for line in open(demo_data / "test.jsonl")]
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    assert all(r["question"].endswith("Answer with a single word or phrase.") for r in a)
    settings = json.loads((tmp_path / "a.settings.json").read_text())
    assert settings["model"]["kind"] == "model" and settings["prompt"]["vqa_template"] == template
    assert settings["inputs"]["split"] == "test" and settings["generation"]["max_new_tokens"] == 3
    assert not (tmp_path / "a.settings.json.partial").exists() and not (tmp_path / "a.jsonl.partial").exists()


def test_a_partial_from_other_inputs_is_refused(tiny_run, demo_data, tmp_path):
    out = tmp_path / "p.jsonl"
    args = ["infer", str(tiny_run), "--data", str(demo_data), "--out", str(out), "--max-new-tokens", "2"]
    assert main(args) == 0
    complete = rows(out)
    # make it look interrupted after three answers, as a kill would leave it
    (tmp_path / "p.jsonl.partial").write_text("".join(json.dumps(r) + "\n" for r in complete[:3]))
    (tmp_path / "p.settings.json").rename(tmp_path / "p.settings.json.partial")
    out.unlink()
    assert main([*args, "--template", "Q: {question}"]) == 2  # another prompt: refused
    assert main(args) == 0  # the same command resumes
    assert rows(out) == complete


def test_a_partial_line_that_answers_no_sample_is_refused(tiny_run, demo_data, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    (tmp_path / "p.jsonl.partial").write_text('["not", "a", "row"]\n')
    assert main(["infer", str(tiny_run), "--data", str(demo_data), "--out", str(out)]) == 2
    assert "p.jsonl.partial:1" in capsys.readouterr().err


def test_best_weights_are_a_source(tiny_run, demo_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.copytree(run / "adapter", run / "best")
    assert resolve_source(str(run / "best")).kind == "run"
    assert main(["infer", str(run / "best"), "--data", str(demo_data), "--out", str(tmp_path / "best.jsonl"),
                 "--max-new-tokens", "2"]) == 0
    assert main(["infer", str(run), "--data", str(demo_data), "--out", str(tmp_path / "last.jsonl"),
                 "--max-new-tokens", "2"]) == 0
    assert rows(tmp_path / "best.jsonl") == rows(tmp_path / "last.jsonl")  # the same weights here


def test_remote_code_from_a_run_dir_needs_the_flag(tiny_run, demo_data, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    recipe = (run / "recipe.yaml").read_text().replace("trust_remote_code: false", "trust_remote_code: true")
    assert "trust_remote_code: true" in recipe
    (run / "recipe.yaml").write_text(recipe)
    assert main(["infer", str(run), "--data", str(demo_data), "--out", str(tmp_path / "p.jsonl")]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path / "exp")]) == 2
    assert main(["infer", str(run), "--data", str(demo_data), "--out", str(tmp_path / "p.jsonl"),
                 "--max-new-tokens", "1", "--trust-remote-code"]) == 0


def test_prompt_flags_reach_the_answers_and_the_settings(tiny_base, demo_data, tmp_path):
    out = tmp_path / "fs.jsonl"
    assert main(["infer", str(tiny_base), "--data", str(demo_data), "--out", str(out), "--max-new-tokens", "2",
                 "--shots", "1", "--shots-seed", "3", "--closed-answer", "rank", "--system-prompt", "You are a radiologist.",
                 "--limit", "5", "--limit-seed", "1"]) == 0
    answered = rows(out)
    assert len(answered) == 5
    prompt = json.loads((tmp_path / "fs.settings.json").read_text())["prompt"]
    assert prompt["shots"] == 1 and prompt["shots_seed"] == 3 and prompt["closed_answer"] == "rank"
    assert prompt["system_prompt"] == "You are a radiologist."
    assert set(prompt["exemplars"]) == {r["id"] for r in answered}
    closed = [r for r in answered if r["answer_type"] == "closed" and " or " not in r["question"]]
    assert closed and all(r["prediction"] in ("yes", "no") for r in closed)  # ranked, never generated text
    # the subsample depends on the seed and the ids only
    again = tmp_path / "again.jsonl"
    assert main(["infer", "tiny-demo", "--data", str(demo_data), "--out", str(again), "--max-new-tokens", "1",
                 "--blind", "--limit", "5", "--limit-seed", "1"]) == 0
    assert [r["id"] for r in rows(again)] == [r["id"] for r in answered]
    assert json.loads((tmp_path / "again.settings.json").read_text())["prompt"]["blind"] is True


def test_images_walks_sub_folders_with_relative_ids_and_takes_one_file(tiny_run, tmp_path, capsys):
    from PIL import Image

    for study in ("study1", "study2"):
        (tmp_path / "scans" / study).mkdir(parents=True)
        Image.new("RGB", (40, 40), (90, 90, 90)).save(tmp_path / "scans" / study / "image1.png")
    (tmp_path / "scans" / "study1" / "notes.txt").write_text("not an image")
    out = tmp_path / "q.jsonl"
    assert main(["infer", str(tiny_run), "--images", str(tmp_path / "scans"), "--question", "Is this normal?",
                 "--out", str(out), "--max-new-tokens", "1"]) == 0
    assert [r["id"] for r in rows(out)] == ["study1/image1.png", "study2/image1.png"]
    assert "1 other files ignored" in capsys.readouterr().err
    one = tmp_path / "one.jsonl"
    assert main(["infer", str(tiny_run), "--images", str(tmp_path / "scans" / "study2" / "image1.png"),
                 "--question", "Is this normal?", "--out", str(one), "--max-new-tokens", "1"]) == 0
    assert [r["id"] for r in rows(one)] == ["image1.png"]


def test_sampling_options_are_seeded_recorded_and_checked(tiny_base, demo_data, tmp_path, capsys):
    common = ["--data", str(demo_data), "--max-new-tokens", "6", "--limit", "12", "--temperature", "1.5",
              "--top-p", "0.95", "--repetition-penalty", "1.2"]
    outs = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = tmp_path / f"{name}.jsonl"
        assert main(["infer", str(tiny_base), "--out", str(out), "--seed", str(seed), *common]) == 0
        outs[name] = [r["prediction"] for r in rows(out)]
    assert outs["a"] == outs["b"]  # the same command, the same samples
    assert outs["a"] != outs["c"]  # another seed draws otherwise
    generation = json.loads((tmp_path / "a.settings.json").read_text())["generation"]
    assert generation["do_sample"] is True and generation["temperature"] == 1.5 and generation["seed"] == 1
    assert generation["top_p"] == 0.95 and generation["repetition_penalty"] == 1.2
    # a stop string ends the answer and is cut from it
    stop = tmp_path / "stop.jsonl"
    greedy = tmp_path / "greedy.jsonl"
    assert main(["infer", str(tiny_base), "--out", str(greedy), "--data", str(demo_data), "--limit", "12",
                 "--max-new-tokens", "6"]) == 0
    texts = [r["prediction"] for r in rows(greedy)]
    marker = next(t for t in texts if len(t) > 2)[1]  # a character the greedy answers contain
    assert main(["infer", str(tiny_base), "--out", str(stop), "--data", str(demo_data), "--limit", "12",
                 "--max-new-tokens", "6", "--stop", marker]) == 0
    assert all(marker not in r["prediction"] for r in rows(stop))
    assert main(["infer", str(tiny_base), "--out", str(tmp_path / "bad.jsonl"), "--data", str(demo_data),
                 "--temperature", "-1"]) == 2
    assert "--temperature" in capsys.readouterr().err
