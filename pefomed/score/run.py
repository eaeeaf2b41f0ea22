"""`pefomed score`: PRED.jsonl -> METRICS.json (+ terminal table + report).

One file: every metric with a seeded bootstrap interval. `compare`: a paired comparison on the same
ids. Several files (seeds of one setting): mean +- std across runs.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pefomed.errors import UserError
from pefomed.io import sha256_file, write_json
from pefomed.score import vqa as vqa_mod
from pefomed.score.rows import Row, read_rows
from pefomed.score.stats import (DEFAULT_ALPHA, DEFAULT_RESAMPLES, DEFAULT_SEED, Bootstrap, MetricSpec,
                                 mcnemar_exact, paired_difference)

SECTIONS = ("vqa", "report", "clinical", "semantic", "judge")


@dataclass
class ScoreOptions:
    task: str | None = None  # force vqa | report metrics
    vqa_convention: str = "exact"
    tokenizer: str = "ptb"  # ptb | whitespace
    meteor: bool = True
    clinical: bool = True
    uncertain: str = "positive"  # positive | negative | ignore
    semantic: bool = False
    judge_url: str | None = None
    judge_model: str | None = None
    judge_key_env: str | None = None
    judge_local: str | None = None
    judge_cache: str | None = None
    bootstrap: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    alpha: float = DEFAULT_ALPHA
    progress: bool = False

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> "ScoreOptions":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown score options: {', '.join(unknown)}")
        opts = cls(**options)
        if opts.vqa_convention not in vqa_mod.CONVENTIONS:
            raise UserError(f"--vqa-convention must be one of {vqa_mod.CONVENTIONS}, got {opts.vqa_convention!r}")
        if opts.tokenizer not in ("ptb", "whitespace"):
            raise UserError(f"--tokenizer must be ptb or whitespace, got {opts.tokenizer!r}")
        if opts.uncertain not in ("positive", "negative", "ignore"):
            raise UserError(f"--uncertain must be positive, negative or ignore, got {opts.uncertain!r}")
        if opts.bootstrap < 0:
            raise UserError("--bootstrap must be >= 0")
        if not 0 < opts.alpha < 1:
            raise UserError("--alpha must be in (0, 1)")
        return opts


def collect_specs(rows: list[Row], opts: ScoreOptions) -> tuple[list[MetricSpec], dict[str, Any]]:
    """All metric specs for the rows, and settings/notes the sections report."""
    specs: list[MetricSpec] = []
    notes: dict[str, Any] = {}
    from pefomed.score.vqa_section import vqa_metrics

    specs += vqa_metrics(rows, opts.vqa_convention)
    if any(r.task == "report" for r in rows):
        from pefomed.score.nlg import report_metrics

        specs += report_metrics(rows, tokenizer=opts.tokenizer, meteor=opts.meteor, notes=notes)
        if opts.clinical:
            from pefomed.score.clinical import clinical_metrics

            specs += clinical_metrics(rows, uncertain=opts.uncertain)
        if opts.semantic:
            from pefomed.score.semantic import semantic_metrics

            specs += semantic_metrics(rows, notes=notes)
    if opts.judge_url or opts.judge_local:
        from pefomed.score.judge import judge_metrics

        specs += judge_metrics(rows, opts, notes=notes)
    return specs, notes


def _sections(specs: list[MetricSpec], boot: Bootstrap | None, alpha: float, progress: bool = False) -> dict[str, dict]:
    from pefomed.console import track

    out: dict[str, dict] = {}
    for spec in (track(specs, "metrics + intervals") if progress else specs):
        out.setdefault(spec.section, {})[spec.name] = spec.evaluate(boot, alpha)
    return out


def _settings(opts: ScoreOptions, paths: list[Path], notes: dict[str, Any]) -> dict[str, Any]:
    from pefomed.score import conventions

    settings = {
        "convention": {"vqa": opts.vqa_convention},
        "normalization": conventions.normalization(opts.vqa_convention),
        "tokenizer": conventions.tokenizer(opts.tokenizer),
        "bootstrap": {"resamples": opts.bootstrap, "seed": opts.seed, "interval": f"{100 * (1 - opts.alpha):g}% percentile"},
        "alpha": opts.alpha,
        "seeds": {"bootstrap": opts.seed},
        "clinical_uncertain": opts.uncertain,
        "files": [{"path": str(p), "sha256": sha256_file(p)} for p in paths],
    }
    settings.update(notes)
    return settings


def score_rows(rows: list[Row], opts: ScoreOptions) -> tuple[dict, list[MetricSpec], dict]:
    specs, notes = collect_specs(rows, opts)
    boot = Bootstrap.make(len(rows), opts.bootstrap, opts.seed) if opts.bootstrap else None
    return _sections(specs, boot, opts.alpha, opts.progress), specs, notes


def _compare(rows_a: list[Row], rows_b: list[Row], path_a: Path, path_b: Path, opts: ScoreOptions) -> dict:
    ids_a = {r.id for r in rows_a}
    ids_b = {r.id for r in rows_b}
    if ids_a != ids_b:
        only_a = sorted(ids_a - ids_b)
        only_b = sorted(ids_b - ids_a)
        def show(ids):
            return ", ".join(ids[:20]) + (f" ... ({len(ids)} in all)" if len(ids) > 20 else "")
        raise UserError(f"--compare needs the same ids in both files: only in {path_a}: {show(only_a) or 'none'}; "
                        f"only in {path_b}: {show(only_b) or 'none'}")
    order = {r.id: i for i, r in enumerate(rows_a)}
    rows_b = sorted(rows_b, key=lambda r: order[r.id])
    for a, b in zip(rows_a, rows_b):
        if a.reference != b.reference:
            raise UserError(f"--compare: id {a.id!r} has different references in {path_a}:{a.line} and {path_b}:{b.line}")
    specs_a, _ = collect_specs(rows_a, opts)
    specs_b, _ = collect_specs(rows_b, opts)
    by_key_b = {(s.section, s.name): s for s in specs_b}
    boot = Bootstrap.make(len(rows_a), max(opts.bootstrap, 1), opts.seed)
    out: dict[str, dict] = {}
    for spec in specs_a:
        other = by_key_b.get((spec.section, spec.name))
        if other is None or spec.extra and "unavailable" in spec.extra:
            continue
        entry = paired_difference(spec.stats, other.stats, spec.fn, boot, opts.alpha)
        if spec.value is not None and other.value is not None:
            entry["a"], entry["b"] = float(spec.value), float(other.value)
            entry["value"] = entry["a"] - entry["b"]
        if spec.binary is not None and other.binary is not None:
            mask = spec.mask if spec.mask is not None else np.ones(len(rows_a), bool)
            test = mcnemar_exact(spec.binary[mask], other.binary[mask])
            entry["mcnemar"] = test
            # For accuracies the exact McNemar test decides significance; the bootstrap interval
            # is still reported. Direction comes from the difference.
            if test["p_value"] < opts.alpha:
                entry["verdict"] = "win" if entry["value"] > 0 else "loss"
            else:
                entry["verdict"] = "tie"
        out.setdefault(spec.section, {})[spec.name] = entry
    return out


def _across_runs(per_run: list[dict]) -> dict[str, dict]:
    """mean +- std (ddof=1) per metric across runs, with a t interval for the mean."""
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
        half = float(student_t.ppf(0.975, k - 1)) * std / math.sqrt(k) if k > 1 else float("nan")
        out.setdefault(section, {})[name] = {
            "value": mean, "std": std, "ci_low": mean - half if k > 1 else None,
            "ci_high": mean + half if k > 1 else None, "n": per_run[0][section][name]["n"],
            "n_runs": k, "values": values}
    return out


def score_files(paths: list[Path], *, compare: Path | None = None, out: Path | None = None,
                report: Path | None = None, **options) -> dict:
    """Score one or several PRED.jsonl files (see module doc); write METRICS.json to `out` and the
    human report to `report` (default: next to `out`) when given. Returns the METRICS dict."""
    opts = ScoreOptions.from_kwargs(options)
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("give at least one predictions file")
    if compare is not None and len(paths) > 1:
        raise UserError("--compare takes exactly one predictions file to compare against it")
    all_rows = [read_rows(p, opts.task) for p in paths]
    if len(paths) == 1:
        sections, specs, notes = score_rows(all_rows[0], opts)
        metrics: dict[str, Any] = dict(sections)
    else:
        per_run = []
        notes = {}
        for rows in all_rows:
            sections, _, notes = score_rows(rows, opts)
            per_run.append(sections)
        metrics = _across_runs(per_run)
        metrics["runs"] = [{"path": str(p), **s} for p, s in zip(paths, per_run)]
    settings = _settings(opts, paths + ([Path(compare)] if compare else []), notes)
    if compare is not None:
        compare = Path(compare)
        rows_b = read_rows(compare, opts.task)
        metrics["compare"] = {"a": str(paths[0]), "b": str(compare), "alpha": opts.alpha,
                              "sections": _compare(all_rows[0], rows_b, paths[0], compare, opts)}
    metrics["settings"] = settings
    if out is not None:
        write_json(out, metrics)
        if report is None:
            report = Path(out).parent / "report"
    if report is not None:
        from pefomed.score.report import write_report

        write_report(metrics, Path(report))
    return metrics


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.4f}"


def print_metrics(metrics: dict) -> None:
    """The metrics as Rich tables on the terminal, every number with its interval."""
    from rich.table import Table

    from pefomed.console import console

    table = Table(title="pefomed score", show_lines=False)
    for col in ("section", "metric", "value", "95% CI" if metrics.get("settings", {}).get("alpha", 0.05) == 0.05 else "CI", "n"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    multi = "runs" in metrics
    for section in SECTIONS:
        for name, entry in (metrics.get(section) or {}).items():
            if entry.get("unavailable"):
                table.add_row(section, name, "unavailable", entry["unavailable"], str(entry.get("n", "")))
                continue
            value = _fmt(entry.get("value"))
            if multi:
                value = f"{value} ± {entry.get('std', 0):.4f}"
            table.add_row(section, name, value, f"[{_fmt(entry.get('ci_low'))}, {_fmt(entry.get('ci_high'))}]",
                          str(entry.get("n", "")))
    console.print(table)
    comp = metrics.get("compare")
    if comp:
        ct = Table(title=f"A = {comp['a']}  vs  B = {comp['b']}  (alpha {comp['alpha']})")
        for col in ("section", "metric", "A", "B", "A - B", "CI", "p", "verdict"):
            ct.add_column(col)
        colors = {"win": "green", "loss": "red", "tie": "yellow"}
        for section, entries in comp["sections"].items():
            for name, e in entries.items():
                p = e.get("mcnemar", {}).get("p_value", e.get("p_value"))
                ct.add_row(section, name, _fmt(e.get("a")), _fmt(e.get("b")), _fmt(e.get("value")),
                           f"[{_fmt(e.get('ci_low'))}, {_fmt(e.get('ci_high'))}]", _fmt(p),
                           f"[{colors[e['verdict']]}]{e['verdict']}[/]")
        console.print(ct)
    settings = metrics.get("settings", {})
    if "clinical" in metrics:
        console.print(f"clinical labels: uncertain mentions counted as [bold]{settings.get('clinical_uncertain')}[/]")
    console.print(f"VQA convention: {settings.get('convention', {}).get('vqa')}; tokenizer: "
                  f"{settings.get('tokenizer', {}).get('name')}; bootstrap: {settings.get('bootstrap', {})}")
