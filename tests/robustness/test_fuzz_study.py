"""Fuzz study files: each case is a valid study file with one seeded mutation (a value replaced,
a key removed or added, the file cut, re-encoded or filled with binary). `pefomed study FILE
--dry-run` must list the plan (exit 0) or give one error naming the key (exit 2); never a
traceback, never a folder written by a dry run."""

from __future__ import annotations

import random

import pytest
import yaml

import fuzzlib
from robust_checks import check_message, run_main


def _study(data_dir) -> dict:
    return {
        "name": "fuzz",
        "models": [{"name": "a", "source": "tiny-demo"}, {"name": "b", "source": "tiny-demo", "base": "a"}],
        "data": [{"name": "mini", "dir": str(data_dir), "val_split": None}],
        "adaptations": [{"name": "zero-shot", "kind": "zero-shot"},
                        {"name": "ft", "kind": "fine-tune", "recipe": "tiny-demo", "methods": ["lora", "ia3"],
                         "overrides": ["train.max_steps=2"]}],
        "seeds": [0, 1],
        "comparisons": [{"kind": "method", "reference": "lora"}, {"kind": "adaptation", "reference": "zero-shot"}],
    }


@pytest.mark.parametrize("part", range(2))
def test_study_file_fuzz(part, tmp_path, demo_data, capsys):
    n = max(1, fuzzlib.cases("study") // 2)
    outcomes = {"planned": 0, "refused": 0}
    for seed in range(part * n, (part + 1) * n):
        rng = random.Random(f"study:{seed}")
        path = tmp_path / f"study-{seed}.yaml"
        base = _study(demo_data)
        if rng.random() < 0.7:
            doc, label = fuzzlib.mutate_doc(base, rng)
            text = yaml.safe_dump(doc, allow_unicode=False).replace(fuzzlib.DEEP, "[" * 3000 + "]" * 3000)
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            data, label = fuzzlib.mutate_bytes(yaml.safe_dump(base).encode(), rng)
            path.write_bytes(data)
        out = tmp_path / f"out-{seed}"
        code, stdout, err = run_main(["study", path, "--out", out, "--dry-run"], capsys)
        check_message(code, stdout, err, f"study seed {seed}: {label}")
        assert not out.exists(), f"study seed {seed}: a dry run wrote {out}"
        outcomes["planned" if code == 0 else "refused"] += 1
    print(f"study part {part}: {n} cases, {outcomes}")
    assert outcomes["refused"] > 0  # the mutations do reach the validation
