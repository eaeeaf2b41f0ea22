"""Model kinds register themselves here (`model.kind` in a recipe), one module each:

| kind | module | base weights come from |
|---|---|---|
| tiny | pefomed.models.tiny | built in code into RUN_DIR/base_model (nothing downloaded) |
| hf | pefomed.models.hf | a folder or hub id AutoModelForImageTextToText + AutoProcessor load |
| composed | pefomed.models.composed | a vision encoder + a causal LM assembled PeFoMed-style |

Each kind answers the same five questions (check, materialize, load, describe, ships_base), so
train, infer and export never branch on a kind's name. Like peft's `register_peft_method` and
pefomed's own dataset-format registry: adding a kind is one new module, no edit elsewhere
(pefomed.models.loader imports the kind modules so they register).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pefomed.errors import UserError
from pefomed.recipe import ModelSection


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


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> ModelKind:
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} registered twice")
    KINDS[kind.name] = kind
    return kind


def kind_of(section: ModelSection) -> ModelKind:
    try:
        return KINDS[section.kind]
    except KeyError:
        raise UserError(f"recipe key 'model.kind': {section.kind!r} is not one of {', '.join(sorted(KINDS))}") from None
