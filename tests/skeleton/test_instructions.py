import pytest

from pefomed.instructions import POOLS, instruction
from pefomed.errors import UserError
from pefomed.recipe import load_recipe
from pefomed.records import Sample


def vqa(i, answer_type="closed"):
    return Sample(id=f"s{i}", task="vqa", images=[], question=f"Q{i}?", answer="yes", answer_type=answer_type)


def test_single_template_and_report_prompt():
    data = load_recipe("tiny-demo", ['data.vqa_template="Question: {question}"']).data
    assert instruction(vqa(1), data) == "Question: Q1?"
    report = Sample(id="r", task="report", images=[], answer="...")
    assert instruction(report, data) == data.report_prompt
    report.prompt = "Own prompt"
    assert instruction(report, data) == "Own prompt"


def test_pool_choice_is_seeded_per_sample_and_stable():
    data = load_recipe("tiny-demo", ["data.vqa_template=pool:closed-open"]).data
    closed = POOLS["closed-open"]["closed"]
    picks = [instruction(vqa(i), data) for i in range(60)]
    assert picks == [instruction(vqa(i), data) for i in range(60)], "same sample, same instruction"
    assert {p for p in picks} == {t.format(question=f"Q{i}?") for i, t in enumerate(closed) for i in range(60)} & set(picks)
    used = {next(t for t in closed if t.format(question=f"Q{i}?") == p) for i, p in enumerate(picks)}
    assert used == set(closed), "every template of the pool is used"
    assert instruction(vqa(3, "open"), data) in {t.format(question="Q3?") for t in POOLS["closed-open"]["open"]}
    other = load_recipe("tiny-demo", ["data.vqa_template=pool:closed-open", "data.template_seed=1"]).data
    assert [instruction(vqa(i), other) for i in range(60)] != picks


def test_report_pool_and_list_from_the_recipe():
    data = load_recipe("tiny-demo", ["data.report_prompt=pool:pefomed-paper-report"]).data
    report = Sample(id="r1", task="report", images=[], answer="...")
    assert instruction(report, data) in POOLS["pefomed-paper-report"]
    data = load_recipe("tiny-demo", ['data.vqa_template=["A {question}", "B {question}"]']).data
    assert instruction(vqa(1), data) in ("A Q1?", "B Q1?")


@pytest.mark.parametrize("override, message", [
    ("data.vqa_template=no placeholder", "has no {question} placeholder"),
    ("data.vqa_template=pool:nope", "unknown pool 'nope'"),
    ('data.vqa_template="{question} {answer}"', "not valid"),
])
def test_bad_templates_name_the_recipe_key(override, message):
    with pytest.raises(UserError, match="data.vqa_template") as err:
        load_recipe("tiny-demo", [override])
    assert message in str(err.value)
