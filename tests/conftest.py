"""Shared test fixtures. Tests may read ../shared (the complete VQA-RAD copy); the tool never does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Never reach for a model hub from a test, even by accident.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The tests run the installed entry points (pefomed, torchrun, deepspeed) as a user types them. When
# pytest runs from a virtualenv that is not activated (`venv/bin/python -m pytest`), those scripts
# sit beside the interpreter, not on PATH: put that folder first so the same install is tested.
_BIN = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the project's shared data folder) is not present")
    return SHARED


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The bundled VQA-RAD subset, prepared once per session."""
    from pefomed.data.prepare import prepare
    from pefomed.demo import demo_source

    out = tmp_path_factory.mktemp("demo-data") / "data"
    prepare(demo_source(), "data-rad", out)
    return out


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_data) -> Path:
    """A tiny run trained for two steps with the real DeepSpeed path (shared by infer tests)."""
    from pefomed.recipe import load_recipe
    from pefomed.train.loop import train

    run = tmp_path_factory.mktemp("tiny-run") / "run"
    recipe = load_recipe("tiny-demo", ["train.max_steps=2", "train.batch_size=4"])
    recipe.data.dir = str(demo_data)
    train(recipe, run)
    return run
