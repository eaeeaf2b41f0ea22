"""The tuning methods are one table (pefomed.methods.METHODS): the recipe's choices, a study's
method names and what export and RUN_DIR know of each method all read it."""

from __future__ import annotations

from typing import get_args

from pefomed.methods import METHODS, QUANTIZABLE_METHODS


def test_the_recipe_and_the_study_offer_exactly_the_table():
    from pefomed.recipe import MethodSection
    from pefomed.study.spec import Adaptation

    assert get_args(MethodSection.model_fields["name"].annotation) == tuple(METHODS)
    (item,) = get_args(Adaptation.model_fields["methods"].annotation)
    assert get_args(item) == tuple(METHODS)


def test_every_method_of_the_table_has_a_peft_config_or_saves_weights(tmp_path):
    """A row added to the table without its build in peft_methods fails here, not in a user's run."""
    from pefomed.models.loader import load_base, materialize_base
    from pefomed.models.peft_methods import apply_method
    from pefomed.recipe import load_recipe

    base = None
    for name, facts in METHODS.items():
        recipe = load_recipe("tiny-demo", [f"method.name={name}"])
        base = base or materialize_base(recipe.model, tmp_path)
        model = apply_method(load_base(base, recipe.model).model, recipe.method)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        assert trainable, name
        assert hasattr(model, "peft_config") == facts.has_adapter, name
    assert set(QUANTIZABLE_METHODS) <= set(METHODS)


def _first_column_names(table_lines: list[str]) -> list[str]:
    """The method names of a Markdown table's first column ("`lora`, `dora`" or "lora, dora")."""
    names = []
    for line in table_lines:
        cells = line.strip().strip("|").split("|")
        if line.lstrip().startswith("|") and not set(cells[0].strip()) <= set("-: "):
            names += [n.strip().strip("`") for n in cells[0].split(",")]
    return names[1:]  # the header's cell


def test_the_method_tables_of_the_docs_list_exactly_the_methods():
    """A row added to METHODS without its line in the user's table (docs/recipes.md) or the
    module's (pefomed.models.peft_methods) fails here."""
    from pathlib import Path

    import pefomed.models.peft_methods as peft_methods

    text = (Path(__file__).resolve().parents[2] / "docs" / "recipes.md").read_text()
    section = text.split("## Tuning methods (`method.name`)", 1)[1].split("\n## ", 1)[0]
    assert _first_column_names(section.splitlines()) == list(METHODS)
    assert _first_column_names(peft_methods.__doc__.splitlines()) == list(METHODS)


def test_grpo_refuses_a_kl_penalty_exactly_for_the_methods_without_an_adapter():
    """GRPO's reference model is the policy with its adapter disabled: a method with no adapter
    (METHODS' has_adapter) has no reference, and beta > 0 would silently penalise nothing."""
    import pytest

    from pefomed.errors import UserError
    from pefomed.recipe import load_recipe
    from pefomed.train.grpo_step import check_recipe

    for name, facts in METHODS.items():
        recipe = load_recipe("tiny-demo", [f"method.name={name}", "train.objective=grpo", "train.grpo.beta=0.04"])
        if facts.has_adapter:
            check_recipe(recipe)
        else:
            with pytest.raises(UserError, match=f"method.name={name} has none") as refused:
                check_recipe(recipe)
            assert "train.grpo.beta" in refused.value.keys
        check_recipe(load_recipe("tiny-demo", [f"method.name={name}", "train.objective=grpo", "train.grpo.beta=0"]))
