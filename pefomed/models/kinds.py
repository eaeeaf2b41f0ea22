"""Model kinds register themselves here (`model.kind` in a recipe), one module each:

| kind | module | base weights come from |
|---|---|---|
| tiny | pefomed.models.tiny | built in code into RUN_DIR/base_model (nothing downloaded) |
| hf | pefomed.models.hf | a folder or hub id AutoModelForImageTextToText + AutoProcessor load |
| composed | pefomed.models.composed | a vision encoder + a causal LM assembled PeFoMed-style |

Each kind answers the same five questions (check, materialize, load, describe, ships_base), so
train, infer and export never branch on a kind's name, and declares the recipe keys it adds to
the model section (`keys`: model.tiny, model.name_or_path, model.composed), so the recipe never
names a kind either. Like peft's `register_peft_method` and pefomed's own dataset-format
registry: adding a built-in kind is one new module that calls `register`, plus its line in
pefomed.models.builtin_kinds; a kind in another package names its ModelKind under the entry-point
group `pefomed.model_kinds` in its own pyproject.toml, with no edit to pefomed. pefomed.recipe
loads those entry points (pefomed's own names builtin_kinds) the first time it needs the kinds;
tests/models/test_kind_plugin.py adds a kind that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pefomed.errors import UserError
from pefomed.recipe import ModelSection, model_kinds, register_kind_keys


@dataclass(frozen=True)
class ModelKind:
    name: str
    # cheap checks of the recipe's model keys, before any process group or RUN_DIR exists
    check: Callable[[ModelSection], None]
    # where the base weights live for a run in RUN_DIR (builds them there when the kind makes its own)
    materialize: Callable[[ModelSection, Path], str]
    # (source from materialize, section, precision) -> ModelBundle
    load: Callable[[str, ModelSection, str], object]
    # one line naming the base model, for READMEs and reports
    describe: Callable[[ModelSection], str]
    # the base weights exist nowhere but in RUN_DIR, so an adapter export must carry them
    ships_base: bool = False
    # the keys this kind adds to the recipe's model section: {key: (annotation, default or
    # pydantic.Field(...))}, e.g. {"tiny": (TinyConfig, Field(default_factory=TinyConfig))}
    keys: dict[str, tuple[Any, Any]] = field(default_factory=dict)


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} registered twice")
    register_kind_keys(kind.name, kind.keys)
    KINDS[kind.name] = kind
    return kind


def kind_of(section: ModelSection) -> ModelKind:
    model_kinds()  # every installed kind registered (a no-op once any recipe has loaded)
    try:
        return KINDS[section.kind]
    except KeyError:
        raise UserError(f"recipe key 'model.kind': {section.kind!r} is not one of {', '.join(sorted(KINDS))}") from None
