"""Few-shot prompts and the system prompt (pefomed.infer.fewshot, pefomed.data.collate).

Exemplars are chosen from the data and a seed alone, so two models compared see the same ones;
a few-shot prompt holds each exemplar's images and answer before the question, for every family
whose processor takes several images in one conversation; a batch answers what each prompt
answers alone; a family that cannot is refused by name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pefomed.records import Sample

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))
from tiny_families import BUILDERS

FEW_SHOT = ["llava", "qwen2_vl", "qwen2_5_vl", "gemma3", "idefics3", "smolvlm"]


def _pool() -> list[Sample]:
    pool = []
    for i in range(12):
        kind = "closed" if i % 3 else "open"
        pool.append(Sample(id=f"t{i:02d}", task="vqa", images=[f"img{i // 2}.png"], question=f"q{i}?",
                           answer="yes" if kind == "closed" else f"answer {i}", answer_type=kind))
    pool.append(Sample(id="r0", task="report", images=["r.png"], answer="No acute findings."))
    pool.append(Sample(id="r1", task="report", images=["r1.png"], answer="Clear lungs."))
    return pool


def test_exemplars_depend_on_seed_and_data_only_and_fit_the_question():
    from pefomed.errors import UserError
    from pefomed.infer.fewshot import select_exemplars

    pool = _pool()
    query = Sample(id="t04", task="vqa", images=["img2.png"], question="q?", answer="yes", answer_type="closed")
    chosen = select_exemplars(pool, 3, seed=7, query=query)
    assert len(chosen) == 3 and len({s.id for s in chosen}) == 3
    assert all(s.task == "vqa" and s.answer_type == "closed" for s in chosen)
    # never the query, nor another question on the query's image (t05 shares img2.png)
    assert not {"t04", "t05"} & {s.id for s in chosen}
    # the order of the train file does not matter; the seed does
    assert [s.id for s in select_exemplars(list(reversed(pool)), 3, 7, query)] == [s.id for s in chosen]
    assert any([s.id for s in select_exemplars(pool, 3, seed, query)] != [s.id for s in chosen] for seed in range(5))
    # open questions get open exemplars; a report gets reports
    open_query = Sample(id="o", task="vqa", images=["z.png"], question="q?", answer="a", answer_type="open")
    assert {s.answer_type for s in select_exemplars(pool, 3, 0, open_query)} == {"open"}
    report = Sample(id="r9", task="report", images=["x.png"], answer="")
    assert {s.id for s in select_exemplars(pool, 2, 0, report)} == {"r0", "r1"}
    with pytest.raises(UserError, match="only 2 usable report exemplars for sample r9"):
        select_exemplars(pool, 3, 0, report)


@pytest.fixture(scope="module")
def spot(tmp_path_factory) -> Path:
    from pefomed.data.synthetic import write_bright_spot_dataset

    return write_bright_spot_dataset(tmp_path_factory.mktemp("fewshot") / "data", n_train=12, n_test=4)


def _family(name: str, root: Path, data: Path, system_prompt: str | None = None):
    from pefomed.models.loader import load_base
    from pefomed.recipe import validate_recipe

    folder = BUILDERS[name](root / name)
    recipe = validate_recipe({"model": {"kind": "hf", "name_or_path": str(folder)},
                              "data": {"dir": str(data), "max_length": 256, "system_prompt": system_prompt},
                              "infer": {"batch_size": 4, "max_new_tokens": 4}})
    return recipe, load_base(str(folder), recipe.model)


@pytest.mark.slow
@pytest.mark.parametrize("name", FEW_SHOT)
def test_few_shot_prompt_holds_the_exemplars_and_a_batch_answers_as_one_by_one(name, spot, tmp_path):
    from pefomed.data.collate import Collator
    from pefomed.infer.fewshot import Prompting, prompt_settings
    from pefomed.infer.generate import predict
    from pefomed.records import read_split

    if name == "smolvlm":
        pytest.importorskip("num2words", reason="SmolVLMProcessor needs the num2words package")
    recipe, bundle = _family(name, tmp_path, spot)
    samples = read_split(spot, "test")
    # a longer question in the batch: prompts of different lengths, left-padded together
    samples[2].question = "Is there a bright spot anywhere in this image, yes or no?"
    prompting = Prompting(shots=2, shots_seed=3)
    exemplars = prompting.exemplars(samples, spot, recipe.data)

    collator = Collator(bundle.processor, recipe.data, spot, train=False)
    zero = collator.encode(samples[0])
    few = collator.encode(samples[0], exemplars[samples[0].id])
    text = bundle.processor.tokenizer.decode(few["input_ids"])
    # every exemplar's answer is in the prompt as an answered turn, the question comes last
    assert text.count("Is there a bright spot in the image?") == 3
    assert text.rstrip().endswith(bundle.processor.tokenizer.decode(zero["input_ids"][-3:]).rstrip())
    image_id = bundle.model.config.image_token_id
    assert int((few["input_ids"] == image_id).sum()) == 3 * int((zero["input_ids"] == image_id).sum())

    rows = {}
    for batch_size in (4, 1):
        out = predict(samples, spot, recipe, bundle, tmp_path / f"b{batch_size}.jsonl", batch_size=batch_size,
                      prompting=prompting)
        rows[batch_size] = [json.loads(line)["prediction"] for line in Path(out).read_text().splitlines()]
    assert rows[4] == rows[1]
    settings = prompt_settings(samples, spot, recipe, bundle.processor, prompting)
    assert settings["shots"] == 2 and settings["shots_seed"] == 3
    assert settings["exemplars"] == {k: [s.id for s in v] for k, v in exemplars.items()}


def test_two_models_see_the_same_exemplars(tiny_run, demo_data, spot, tmp_path):
    """The built-in tiny LLaVA trained by pefomed and a different family (Gemma 3): the exemplar
    ids recorded for each question, and the exemplar answers in each prompt, are the same."""
    from pefomed.data.collate import Collator
    from pefomed.infer.fewshot import Prompting, prompt_settings
    from pefomed.models.run_dir import load_run
    from pefomed.records import read_split

    samples = read_split(demo_data, "test")[:6]
    prompting = Prompting(shots=2, shots_seed=11)
    recipe_a, bundle_a = load_run(tiny_run)
    recipe_b, bundle_b = _family("gemma3", tmp_path, demo_data)
    recipe_b.data.max_length = recipe_a.data.max_length = 1024
    a = prompt_settings(samples, demo_data, recipe_a, bundle_a.processor, prompting)
    b = prompt_settings(samples, demo_data, recipe_b, bundle_b.processor, prompting)
    assert a["exemplars"] == b["exemplars"] and len(a["exemplars"]) == 6
    by_id = {s.id: s for s in read_split(demo_data, "train")}
    for sample in samples[:2]:
        shots = prompting.exemplars([sample], demo_data, recipe_a.data)[sample.id]
        assert [s.id for s in shots] == a["exemplars"][sample.id]
        for recipe, bundle in ((recipe_a, bundle_a), (recipe_b, bundle_b)):
            enc = Collator(bundle.processor, recipe.data, demo_data, train=False).encode(sample, shots)
            text = bundle.processor.tokenizer.decode(enc["input_ids"])
            positions = [text.index(by_id[i].question) for i in a["exemplars"][sample.id]]
            assert positions == sorted(positions) and positions[-1] < text.rindex(sample.question)


def test_a_family_without_multi_image_conversations_is_refused_by_name(spot, tmp_path):
    from pefomed.errors import UserError
    from pefomed.infer.fewshot import Prompting
    from pefomed.infer.generate import predict
    from pefomed.records import read_split

    recipe, bundle = _family("paligemma", tmp_path, spot)
    with pytest.raises(UserError, match="few-shot prompts are not supported for PaliGemmaProcessor"):
        predict(read_split(spot, "test"), spot, recipe, bundle, tmp_path / "p.jsonl", prompting=Prompting(shots=1))
    assert not (tmp_path / "p.jsonl.partial").exists()


def test_system_prompt_is_a_system_turn_or_leads_the_first_user_text(spot, tmp_path):
    from pefomed.data.collate import Collator, system_turn_supported
    from pefomed.infer.fewshot import Prompting
    from pefomed.records import read_split

    sample = read_split(spot, "test")[0]
    system = "You are a careful radiologist."
    # Qwen2-VL's template has a system role (and its default system line gives way to ours)
    recipe, bundle = _family("qwen2_vl", tmp_path, spot, system_prompt=system)
    assert system_turn_supported(bundle.processor)
    text = bundle.processor.tokenizer.decode(Collator(bundle.processor, recipe.data, spot, False).encode(sample)["input_ids"])
    assert text.startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
    assert "You are a helpful assistant." not in text
    # LLaVA-Med's [INST] template has none: the system prompt leads the user text, after the image
    recipe, bundle = _family("llava", tmp_path, spot)
    recipe = recipe.model_copy(update={"data": Prompting(system_prompt=system).data_section(recipe.data)})
    assert not system_turn_supported(bundle.processor)
    text = bundle.processor.tokenizer.decode(Collator(bundle.processor, recipe.data, spot, False).encode(sample)["input_ids"])
    assert text.endswith(f"<image>\n{system}\n\n{sample.question} [/INST]")
    assert text.startswith("<s>[INST] <image>")


def test_prompt_options_are_checked_and_named():
    from pefomed.errors import UserError
    from pefomed.infer.fewshot import Prompting
    from pefomed.recipe import DataSection, validate_recipe

    with pytest.raises(UserError, match="`closed_answer` must be one of generate, rank"):
        Prompting(closed_answer="vote")
    with pytest.raises(UserError, match="`shots` must be at least 0"):
        Prompting(shots=-1)
    with pytest.raises(UserError, match="`template`.*no {question}") as err:
        Prompting(template="Answer briefly.")
    assert err.value.naming_flags({"template": "--template"}).startswith("--template: template")
    with pytest.raises(UserError, match="data.system_prompt"):
        validate_recipe({"data": {"system_prompt": ""}})
    data = Prompting(template="pool:closed-open", system_prompt="Be brief.").data_section(DataSection())
    assert data.vqa_template == "pool:closed-open" and data.system_prompt == "Be brief."
