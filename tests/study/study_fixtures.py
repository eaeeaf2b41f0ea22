"""Small DATA_DIRs and study files for the study tests (the bundled VQA-RAD subset, cut down)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import yaml


def small_data(demo_data: Path, out: Path, train: int = 32, val: int = 12, test: int = 12,
               corrupt_test: bool = False) -> Path:
    """A DATA_DIR with seeded subsets of the demo data's splits; `corrupt_test` replaces every test
    answer and question (what a leak from the test split into prompt selection would notice)."""
    from pefomed.records import read_split, write_split

    out.mkdir(parents=True)
    rows = read_split(demo_data, "train")
    random.Random(0).shuffle(rows)
    tests = read_split(demo_data, "test")[:test]
    if corrupt_test:
        for s in tests:
            s.answer, s.question = "zzz", "Is this the corrupted test split?"
    write_split(out, "train", rows[:train])
    write_split(out, "val", rows[train:train + val])
    write_split(out, "test", tests)
    shutil.copytree(Path(demo_data, "images"), out / "images")  # a DATA_DIR's images live inside it
    return out


def write_study(folder: Path, data_dir: Path, *, pool: bool = True, methods=("lora", "ia3"),
                seeds=(0, 1), name: str = "tiny-study") -> Path:
    """2 tiny models (b's base is a) x (zero-shot, fine-tune with 2 methods) x 1 data set x seeds."""
    (folder / "b.yaml").write_text("model:\n  kind: tiny\n  tiny: {seed: 1}\n")
    # rank closed answers: an untrained tiny model then scores above zero, so equalities below are not 0 == 0
    zero_shot = {"name": "zero-shot", "kind": "zero-shot", "closed_answer": "rank"}
    if pool:
        zero_shot["prompts"] = [{"name": "plain", "template": "{question}"},
                                {"name": "yes-no", "template": "{question} Answer yes or no."}]
    study = {
        "name": name,
        "models": [{"name": "a", "source": "tiny-demo"}, {"name": "b", "source": "b.yaml", "base": "a"}],
        "data": [{"name": "mini", "dir": str(data_dir)}],
        "adaptations": [zero_shot, {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": list(methods),
                                    "closed_answer": "rank", "overrides": ["train.max_steps=2", "train.batch_size=4"]}],
        "seeds": list(seeds),
        "comparisons": [{"kind": "base"}, {"kind": "method", "reference": "lora"},
                        {"kind": "adaptation", "reference": "zero-shot"}],
        "score": {"bootstrap": 200},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path
