"""Rewards for train.objective=grpo and the reasoning template's answer extraction: the answer
reward is pefomed's own VQA scoring (so what is rewarded is what `pefomed score` measures), the
format reward and the extraction are Med-R1's rules, and infer.answer_template puts the extracted
answer in PRED.jsonl (recorded in its settings) while the default leaves predictions untouched."""

from __future__ import annotations

import pytest

from pefomed.metrics.reasoning import extract_answer, follows_template
from pefomed.metrics.vqa import per_sample_scores
from pefomed.records import Sample
from pefomed.train.rewards import RewardSpec, rewards


def vqa(answer, kind="closed"):
    return Sample(id="q", task="vqa", images=["i.png"], question="?", answer=answer, answer_type=kind)


def test_format_and_extraction_follow_med_r1():
    good = "<think>the left lung is dark</think>\n<answer> Yes </answer>"
    assert follows_template(good)
    assert not follows_template("Yes")
    assert not follows_template("<answer>yes</answer>")  # no think block
    assert not follows_template(good + " trailing")  # fullmatch: nothing outside the tags
    assert extract_answer(good) == "Yes"
    assert extract_answer("no tags at all ") == "no tags at all"  # Med-R1 falls back to the whole text
    assert extract_answer("<answer>a</answer><answer>b</answer>") == "a"
    assert extract_answer(" raw ", "none") == " raw "


def test_answer_reward_is_score_exact_match_after_extraction():
    samples = [vqa("yes"), vqa("yes"), vqa("left lung", "open"), vqa("no")]
    texts = ["<think>x</think><answer>Yes.</answer>", "<think>x</think><answer>no</answer>",
             "<think>x</think><answer>The left lung</answer>", "nope"]
    spec = RewardSpec(answer_weight=1.0, format_weight=0.5, answer_template="think_answer")
    out = rewards(texts, samples, spec)
    expected = per_sample_scores(["Yes.", "no", "The left lung", "nope"], [s.answer for s in samples],
                                 [s.answer_type for s in samples], "exact")
    assert out["answer"] == list(expected) == [1.0, 0.0, 1.0, 0.0]
    assert out["format"] == [1.0, 1.0, 1.0, 0.0]
    assert out["reward"] == [1.5, 0.5, 1.5, 0.0]
    # without the template the tags are part of the answer: no exact match
    assert rewards(texts, samples, RewardSpec())["answer"] == [0.0, 0.0, 0.0, 0.0]


def test_convention_changes_the_reward():
    samples, texts = [vqa("no")], ["no, it is normal"]
    assert rewards(texts, samples, RewardSpec(vqa_convention="exact"))["answer"] == [0.0]
    assert rewards(texts, samples, RewardSpec(vqa_convention="llava-med"))["answer"] == [1.0]


def test_report_reward_is_rouge_l():
    report = Sample(id="r", task="report", images=["i.png"], answer="No acute cardiopulmonary process.")
    out = rewards(["no acute cardiopulmonary process.", "large effusion", ""], [report] * 3, RewardSpec())
    assert out["answer"][0] == pytest.approx(1.0)
    assert out["answer"][1] == 0.0 and out["answer"][2] == 0.0


def test_recipe_keys_validated():
    from pefomed.recipe import Recipe

    with pytest.raises(Exception, match="num_generations"):
        Recipe.model_validate({"train": {"grpo": {"num_generations": 1}}})
    with pytest.raises(Exception, match="both 0"):
        Recipe.model_validate({"train": {"grpo": {"answer_reward": 0, "format_reward": 0}}})
    with pytest.raises(Exception, match="objective"):
        Recipe.model_validate({"train": {"objective": "ppo"}})
    assert Recipe().infer.answer_template == "none"


def test_generator_extracts_under_answer_template():
    """The shared generation path (infer and evaluation) applies infer.answer_template."""
    from pefomed.models.generation import Generator
    from pefomed.recipe import InferSection

    gen = Generator.__new__(Generator)  # only the text post-processing is exercised here
    gen.sampling = InferSection(answer_template="think_answer")
    assert gen._cut_at_stop("<think>a</think><answer>yes</answer>") == "yes"
    gen.sampling = InferSection()
    assert gen._cut_at_stop("<think>a</think><answer>yes</answer>") == "<think>a</think><answer>yes</answer>"
    gen.sampling = InferSection(stop=["###"], answer_template="think_answer")
    assert gen._cut_at_stop("<think>a</think><answer>no</answer>### more") == "no"
