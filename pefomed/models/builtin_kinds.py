"""The model kinds pefomed ships, in the order recipes list them ("'tiny', 'hf' or 'composed'").

pyproject.toml's entry point `pefomed.model_kinds: pefomed` names this list, and pefomed.recipe
loads it the first time a recipe needs the kinds (it may not import pefomed.models itself: a
later layer). A built-in kind is one module (pefomed.models.kinds says what it declares) plus its
line here; a kind from another package names its own ModelKind under the same entry-point group.
"""

from __future__ import annotations

from pefomed.models.composed import COMPOSED
from pefomed.models.hf import HF
from pefomed.models.tiny import TINY

KINDS = [TINY, HF, COMPOSED]
