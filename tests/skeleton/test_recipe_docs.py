"""docs/recipes.md's key table is the schema's: every recipe key (the model kinds' own included)
with its type, default and description, rendered by tools/recipe_table.py between marker
comments. A key added, removed, renamed or re-defaulted in the code without rerunning the tool
fails here, and so does a key without a description."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location("recipe_table", ROOT / "tools" / "recipe_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_recipe_key_has_a_description():
    rows = _tool().rows()
    assert len(rows) > 80  # every section was walked (model kinds' keys, data.mix items, train.grpo)
    assert {"model.tiny.image_size", "model.name_or_path", "model.composed.merge_tokens", "data.mix[].ratio",
            "train.grpo.beta", "method.r", "train.lr", "infer.num_beams"} <= {key for key, *_ in rows}
    missing = [key for key, _, _, description in rows if not description.strip()]
    assert not missing, f"recipe keys without Field(description=...): {missing}"


def test_the_docs_table_is_the_schemas():
    tool = _tool()
    page = tool.DOC.read_text(encoding="utf-8")
    assert tool.with_table(page) == page, "docs/recipes.md's key table is stale: run python tools/recipe_table.py"
    from pefomed.recipe import Recipe

    # the table shows the schema's own defaults (spot checks against the live models)
    defaults = Recipe()
    for key, value in {"train.lr": defaults.train.lr, "method.r": defaults.method.r,
                       "model.tiny.patch_size": defaults.model.tiny.patch_size}.items():
        assert f"| `{key}` |" in page and f"| `{value}` |" in page.split(f"| `{key}` |")[1].split("\n")[0]


def test_a_stale_table_is_found_and_rewritten_keeping_the_prose():
    tool = _tool()
    page = tool.DOC.read_text(encoding="utf-8")
    stale = page.replace("| `method.r` | int | `64` |", "| `method.r` | int | `16` |")
    assert stale != page and tool.with_table(stale) == page
    start, end = page.index(tool.START), page.index(tool.END)
    assert tool.with_table(page[:start] + tool.START + "\nold\n" + page[end:]) == page
    assert tool.main(["--check"]) == 0  # `python tools/recipe_table.py --check`: the page is current
