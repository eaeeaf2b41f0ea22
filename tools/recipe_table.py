"""docs/recipes.md's table of recipe keys, rendered from the schema (pefomed.recipe and the model
kinds' sections): key | type | default | description for every field of every section, so the
page cannot drift from the code. tests/skeleton/test_recipe_docs.py fails when they differ.

    python tools/recipe_table.py          # rewrite the table in docs/recipes.md
    python tools/recipe_table.py --check  # exit 1 when the page's table is stale
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from pefomed.io import atomic_write
from pefomed.recipe import ModelSection, Recipe, fields_of, model_kinds

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"
START, END = "<!-- recipe-keys:start -->", "<!-- recipe-keys:end -->"
SCALARS = {int: "int", float: "number", bool: "bool", str: "str", type(None): "null"}


def _sections_in(annotation: Any) -> list[type[BaseModel]]:
    """The recipe sections a field holds (itself a section, or a list of them: data.mix)."""
    found = []
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            found.append(arg)
        elif typing.get_origin(arg) is list:
            found += _sections_in(typing.get_args(arg)[0])
    return found


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(f"`{value}`" for value in args)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        return " or ".join(type_name(arg) for arg in args)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(arg) for arg in args) + "]"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(field) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "–"  # a section: its keys' rows give the defaults
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(map(str, value)) + "]`"
    return f"`{value}`"


def _cell(text: str, prose: bool = True) -> str:
    # a pipe ends a table cell; in prose, <answer> would be read as an HTML tag and vanish
    text = text.replace("|", "\\|").replace("\n", " ")
    return text.replace("<", "&lt;").replace(">", "&gt;") if prose else text


def rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every recipe key, sections in schema order."""
    out = []

    def walk(section: type[BaseModel], prefix: str) -> None:
        for name, field in fields_of(section).items():
            key = f"{prefix}{name}"
            kind = type_name(field.annotation)
            if issubclass(section, ModelSection) and name == "kind":  # the registered kinds
                kind = " | ".join(f"`{k}`" for k in model_kinds())
            out.append((key, kind, default_text(field), field.description or ""))
            for inner in _sections_in(field.annotation):
                walk(inner, f"{key}[]." if "list" in kind else f"{key}.")

    walk(Recipe, "")
    return out


def render() -> str:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| `{key}` | {_cell(kind, prose=False)} | {_cell(default, prose=False)} | {_cell(text)} |"
              for key, kind, default, text in rows()]
    return "\n".join(lines)


def with_table(page: str) -> str:
    """`page` with the text between the markers replaced by the rendered table."""
    if page.count(START) != 1 or page.count(END) != 1 or page.index(START) > page.index(END):
        raise SystemExit(f"{DOC}: expected one {START} ... {END} block")
    head, rest = page.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{render()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    page = DOC.read_text(encoding="utf-8")
    new = with_table(page)
    if "--check" in argv:
        if new != page:
            print(f"{DOC}: the recipe key table is stale; run python tools/recipe_table.py", file=sys.stderr)
            return 1
        return 0
    if new != page:
        with atomic_write(DOC) as handle:
            handle.write(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
