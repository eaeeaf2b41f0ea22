"""Load the base model and processor a recipe names, whatever its kind (pefomed.models.kinds).

Importing this module registers every built-in kind; callers never branch on `model.kind`.
"""

from __future__ import annotations

from pathlib import Path

# Each kind's module registers it on import (the only reason for these imports).
from pefomed.models import composed as _composed  # noqa: F401
from pefomed.models import hf as _hf  # noqa: F401
from pefomed.models import tiny as _tiny  # noqa: F401
from pefomed.models.bundle import ModelBundle, quiet_transformers, torch_dtype  # noqa: F401 (re-exported)
from pefomed.models.kinds import kind_of
from pefomed.recipe import ModelSection


def check_model_source(section: ModelSection) -> None:
    """Cheap checks of the recipe's model paths, before any process group or RUN_DIR exists."""
    kind_of(section).check(section)


def materialize_base(section: ModelSection, run_dir: Path) -> str:
    """Where the base weights live for this run; builds the tiny model into RUN_DIR when needed."""
    return kind_of(section).materialize(section, Path(run_dir))


def load_base(source: str, section: ModelSection, precision: str = "fp32") -> ModelBundle:
    quiet_transformers()
    return kind_of(section).load(source, section, precision)


def describe_base(section: ModelSection) -> str:
    return kind_of(section).describe(section)
