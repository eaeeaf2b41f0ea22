"""LLM judge: PeFoMed's released prompts as a named protocol, the score read after its label,
the cache keyed on the judge's full identity, secrets in the URL never written, unparseable
replies counted beside the average."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pefomed.score import judge_prompts_pefomed as paper
from pefomed.score.judge import Judge, judge_metrics, parse_score, public_url, weights_sha256
from pefomed.score.rows import Row


@pytest.mark.parametrize("reply, high, label, expected", [
    ("on a 0-4 scale, 3", 4, "Score", 3),  # never the first digit anywhere
    ("Score: 3", 4, "Score", 3),
    ("Correctness: 1", 1, "Correctness", 1),
    ("The answer is correct. Correctness: 0", 1, "Correctness", 0),
    ("Correctness: 1 (the 2 answers agree)", 1, "Correctness", 1),
    ("3/4", 4, "Score", 3),
    ("score 2 out of 4", 4, "Score", 2),
    ("1", 1, "Score", 1),
    ("Score: 7", 4, "Score", None),  # outside the scale
    ("3.5", 4, "Score", None),  # not a whole score
    ("I think 2, maybe 3", 4, "Score", None),  # ambiguous
    ("", 4, "Score", None),
])
def test_the_score_is_read_after_its_label(reply, high, label, expected):
    assert parse_score(reply, high, label) == expected


def _rows():
    return [Row(id="1", task="vqa", question="Is there an effusion?", reference="yes", prediction="yes"),
            Row(id="2", task="vqa", question="Which lobe?", reference="left lower", prediction="right"),
            Row(id="3", task="report", question="", reference="Normal heart.", prediction="Enlarged heart.")]


class _Opts:
    judge_protocol = "pefomed-paper"
    progress = False


def test_the_paper_protocol_sends_the_released_prompts_verbatim(tmp_path):
    asked = []

    def ask(prompt):
        asked.append(prompt)
        if "Correctness: your answer" in prompt:
            return "Correctness: 1" if "answer to be determined: yes" in prompt else "Correctness: 0"
        return "I would say Score: 2"

    judge = Judge("test-judge", ask, tmp_path)
    notes = {}
    specs = {spec.name: spec for spec in judge_metrics(_rows(), _Opts(), notes=notes, judge=judge)}
    assert asked[0] == paper.VQA.format(question="Is there an effusion?", true_answer="yes", generated_answer="yes")
    assert "is a good enough answer to the question, output 1" in asked[0]
    assert asked[2] == paper.REPORT.format(ground_truth="Normal heart.", generated_report="Enlarged heart.")
    assert "4: The generated medical report exhibits minimal discrepancy" in asked[2]
    assert specs["vqa_correct"].evaluate(None, 0.05)["value"] == 0.5
    assert specs["report_likert"].evaluate(None, 0.05)["value"] == 2.0
    assert notes["judge"]["protocol"] == "pefomed-paper" and notes["judge"]["unparseable"] == 0


def test_unparseable_replies_are_counted_beside_the_average(tmp_path):
    judge = Judge("test-judge", lambda prompt: "I cannot tell", tmp_path)
    specs = judge_metrics(_rows(), _Opts(), judge=judge)
    vqa = next(spec for spec in specs if spec.name == "vqa_correct").evaluate(None, 0.05)
    assert vqa["unparseable"] == 2 and vqa["n"] == 0


def test_secrets_in_the_judge_url_are_never_part_of_its_name():
    url = "https://user:sk-secret-1@api.example.org:8443/v1/chat/completions?api-key=sk-secret-2"
    assert public_url(url) == "https://api.example.org:8443/v1/chat/completions"
    from pefomed.score.judge import http_judge

    judge = http_judge(url, "gpt-4", None, Path("/nonexistent-cache"))
    assert "sk-secret" not in judge.name and "gpt-4" in judge.name


def test_a_local_judge_is_identified_by_all_of_its_weights(tmp_path):
    folder = tmp_path / "judge"
    folder.mkdir()
    weights = folder / "model.safetensors"
    data = bytearray(300_000)
    weights.write_bytes(bytes(data))
    first = weights_sha256(folder, tmp_path / "cache")
    data[250_000] = 1  # past the first 64 KB: a different judge all the same
    weights.write_bytes(bytes(data))
    second = weights_sha256(folder, tmp_path / "cache")
    assert first != second
    assert weights_sha256(folder, tmp_path / "cache") == second  # memoised by size and mtime
    memos = [json.loads(m.read_text())["sha256"] for m in (tmp_path / "cache" / "weights").glob("*.json")]
    assert sorted(memos) == sorted([first, second])
