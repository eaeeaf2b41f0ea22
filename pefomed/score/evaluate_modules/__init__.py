"""`evaluate`-compatible metric scripts, loadable with no hub access:
evaluate.load("<this folder>/pefomed_vqa.py") or pefomed.score.load_metric("vqa")."""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).parent
NAMES = {"vqa": "pefomed_vqa.py", "nlg": "pefomed_nlg.py", "clinical": "pefomed_clinical.py"}


def path(name: str) -> Path:
    if name not in NAMES:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(NAMES)}")
    return FOLDER / NAMES[name]


def load(name: str, **kwargs):
    import evaluate

    return evaluate.load(str(path(name)), **kwargs)
