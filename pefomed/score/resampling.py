"""Resampling units and the bootstrap of one scoring: which rows resample together (the same
patient, study or image: one image carries many questions) and the Bootstrap drawn over them.
Shared by one file's intervals, the paired comparison and the study report's seed intervals.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pefomed.options.score import ScoreOptions


def row_images(path: Path, rows: list) -> list[list[str]]:
    """Each row's image paths (the first one names the image cluster)."""
    return [list(r.images) for r in rows]


def _meta_key(row, names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = row.meta.get(name)
        if value not in (None, ""):
            return (name, str(value))
    return None


def cluster_keys(rows: list, images: list[list[str]], unit: str) -> tuple[list, dict[str, int]]:
    """The resampling unit of each row (None: the row alone) and how many rows fell back to a
    finer unit because the data lacks the asked one."""
    keys: list = []
    used: Counter = Counter()
    for row, imgs in zip(rows, images):
        key = None
        if unit in ("patient",):
            key = _meta_key(row, ("patient_id", "subject_id"))
        if key is None and unit in ("patient", "study"):
            key = _meta_key(row, ("study_id",))
        if key is None and unit in ("patient", "study", "image") and imgs:
            key = ("image", imgs[0])
        used[key[0] if key else "sample"] += 1
        keys.append(key)
    return keys, dict(used)


def resampling_info(unit: str, keys: list, used: dict[str, int]) -> dict[str, Any]:
    sizes = Counter(k for k in keys if k is not None)
    alone = sum(1 for k in keys if k is None)
    return {"unit": unit, "rows": len(keys), "clusters": len(sizes) + alone,
            "largest_cluster": max(sizes.values(), default=1),
            "rows_by_key": used}  # e.g. {"image": 451} or {"study_id": 900, "image": 12}


def make_bootstrap(n: int, opts: ScoreOptions, clusters):
    """The options' Bootstrap over `n` rows (`clusters`: cluster_codes_of's codes), None without resamples."""
    from pefomed.score.stats import Bootstrap

    if not opts.bootstrap:
        return None
    return Bootstrap.make(n, opts.bootstrap, opts.seed, clusters=clusters, unit=opts.resample_unit)


def cluster_codes_of(keys: list | None):
    """cluster_keys' keys as the Bootstrap's integer cluster codes; None (each row alone) stays None."""
    from pefomed.score.stats import cluster_codes

    return None if keys is None else cluster_codes(keys)
