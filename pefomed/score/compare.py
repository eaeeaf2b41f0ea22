"""The paired comparison of `pefomed score` with `compare` (A files against B files on the same ids,
each side one or several training seeds), and mean +- std across the runs of one setting.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from pefomed.errors import UserError
from pefomed.options.score import ScoreOptions
from pefomed.score.resampling import cluster_codes_of, cluster_keys, make_bootstrap, row_images
from pefomed.score.specs import collect_specs, evaluate_specs


def _agreement_fields(row, keys_row) -> dict[str, Any]:
    from pefomed.metrics import vqa as vqa_mod
    from pefomed.score.vqa_section import GROUP_KEYS, group_value

    out = {"task": row.task}
    if row.task == "vqa":
        out["answer type"] = vqa_mod.answer_type_of(row.reference, row.answer_type)
        for key in GROUP_KEYS:
            out[f"meta.{key}"] = group_value(row, key)
    out["resampling unit"] = keys_row
    return out


def align(files: list[tuple[Path, list]], unit: str) -> tuple[list[list], list]:
    """Every file's rows in the first file's id order, after checking that all files hold the same
    ids, references, subgroups (task, answer type, meta groups) and resampling units: subsets and
    clusters are then those of every file, not of one."""
    (path0, rows0), rest = files[0], files[1:]
    ids0 = {r.id for r in rows0}
    order = {r.id: i for i, r in enumerate(rows0)}
    keys0, _ = cluster_keys(rows0, row_images(path0, rows0), unit)
    fields0 = [_agreement_fields(r, k) for r, k in zip(rows0, keys0)]
    aligned = [rows0]
    for path, rows in rest:
        ids = {r.id for r in rows}
        if ids != ids0:
            only_a = sorted(ids0 - ids)
            only_b = sorted(ids - ids0)

            def show(ids):
                return ", ".join(ids[:20]) + (f" ... ({len(ids)} in all)" if len(ids) > 20 else "")
            raise UserError(f"`compare` needs the same ids in all files: only in {path0}: {show(only_a) or 'none'}; "
                            f"only in {path}: {show(only_b) or 'none'}")
        rows = sorted(rows, key=lambda r: order[r.id])
        keys, _ = cluster_keys(rows, row_images(path, rows), unit)
        for a, b, fa, kb in zip(rows0, rows, fields0, keys):
            if a.reference != b.reference:
                raise UserError(f"`compare`: id {a.id!r} has different references in {path0}:{a.line} and {path}:{b.line}")
            fb = _agreement_fields(b, kb)
            for name, value in fa.items():
                if fb[name] != value:
                    raise UserError(f"`compare`: id {a.id!r} has {name} {value!r} in {path0}:{a.line} but "
                                    f"{fb[name]!r} in {path}:{b.line}; subgroups and resampling units must agree")
        aligned.append(rows)
    return aligned, keys0


def paired_comparison(rows_a: list[list], rows_b: list[list], paths_a: list[Path], paths_b: list[Path],
             opts: ScoreOptions, specs_a: list[list] | None = None) -> dict[str, Any]:
    """Paired comparison of the A files against the B files (each side: one or several seeds).
    `specs_a`: the A files' specs already computed for their own sections, reused where the
    aligned rows are those very rows in the same order (no second tokenization, METEOR JVM or
    clinical labelling of the same file)."""
    import numpy as np

    from pefomed.score.stats import decide, paired_difference

    aligned, keys = align(list(zip(paths_a + paths_b, rows_a + rows_b)), opts.resample_unit)
    unit = opts.resample_unit
    keys = None if unit == "sample" else keys
    codes = cluster_codes_of(keys)
    groups = aligned[0]
    def specs_of(i: int, rows: list) -> list:
        if specs_a is not None and i < len(paths_a) and len(rows) == len(rows_a[i]) \
                and all(x is y for x, y in zip(rows, rows_a[i])):
            return specs_a[i]
        return collect_specs(rows, opts, groups=groups)[0]

    specs = [specs_of(i, rows) for i, rows in enumerate(aligned)]
    k = len(paths_a)
    by_key = [{(s.section, s.name): s for s in file_specs} for file_specs in specs]
    boot = make_bootstrap(len(groups), opts, codes)
    seeds = (k, len(paths_b))
    sections: dict[str, dict] = {}
    for spec in specs[0]:
        key = (spec.section, spec.name)
        same = [m.get(key) for m in by_key]
        if any(s is None or (s.extra and "unavailable" in s.extra) for s in same):
            continue
        side_a, side_b = same[:k], same[k:]
        values = None
        if all(s.value is not None for s in same):
            values = (float(np.mean([s.value for s in side_a])), float(np.mean([s.value for s in side_b])))
        entry = paired_difference([s.stats for s in side_a], [s.stats for s in side_b], spec.fn, boot,
                                  opts.alpha, n=spec.n, values=values)
        binary = spec.binary is not None and all(s.binary is not None for s in same)
        entry = decide(entry, alpha=opts.alpha, binary_a=side_a[0].binary if binary else None,
                       binary_b=side_b[0].binary if binary else None, mask=spec.mask, clusters=codes,
                       seeds=seeds, unit=unit)
        sections.setdefault(spec.section, {})[spec.name] = entry
    per_b = [evaluate_specs(s, boot, opts, codes) for s in specs[k:]]
    b_metrics = per_b[0] if len(per_b) == 1 else across_runs(per_b, opts.alpha)
    return {"sections": sections, "b_metrics": b_metrics, "seeds": {"a": k, "b": len(paths_b)}}


def across_runs(per_run: list[dict], alpha: float) -> dict[str, dict]:
    """mean +- std (ddof=1) per metric across runs, with a (1 - alpha) t interval for the mean."""
    from scipy.stats import t as student_t

    keys: dict[tuple[str, str], list[float]] = {}
    for sections in per_run:
        for section, metrics in sections.items():
            for name, entry in metrics.items():
                if isinstance(entry, dict) and entry.get("value") is not None:
                    keys.setdefault((section, name), []).append(entry["value"])
    out: dict[str, dict] = {}
    for (section, name), values in keys.items():
        k = len(values)
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if k > 1 else 0.0
        half = float(student_t.ppf(1 - alpha / 2, k - 1)) * std / math.sqrt(k) if k > 1 else float("nan")
        out.setdefault(section, {})[name] = {
            "value": mean, "std": std, "ci_low": mean - half if k > 1 else None,
            "ci_high": mean + half if k > 1 else None, "n": per_run[0][section][name]["n"],
            "n_runs": k, "values": values, "interval": "t over runs"}
    return out
