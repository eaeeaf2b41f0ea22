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
