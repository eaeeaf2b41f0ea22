"""`pefomed score`: PRED.jsonl -> METRICS.json (+ terminal table + report).

One file: every metric with an interval (proportion intervals for 0/1 accuracies, a seeded
percentile bootstrap otherwise; resampling images, studies or patients by default, since one image
carries many questions). `compare`: a paired comparison on the same ids, optionally with several
training seeds per side. Several files (seeds of one setting): mean +- std across runs.

The options are declared once, in pefomed.options.score (ScoreOptions: the settings; ScoreCommand:
the command with its files); cli/ generates the command's flags from them.

This module is the orchestration; the parts live beside it: score/specs.py (which metrics the
rows get, and their values with intervals), score/resampling.py (resampling units, the
bootstrap), score/compare.py (the paired comparison, mean +- std across runs) and
score/terminal.py (the tables printed on the terminal).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pefomed.errors import UserError
from pefomed.options import flag_of
from pefomed.options.score import ScoreOptions
from pefomed.score.compare import across_runs, paired_comparison
from pefomed.score.resampling import cluster_codes_of, cluster_keys, make_bootstrap, resampling_info, row_images
from pefomed.score.specs import evaluate_specs, start_specs


# ---------------------------------------------------------------- one file

def score_rows(rows: list, opts: ScoreOptions, keys: list | None = None) -> tuple[dict, list, dict]:
    """Sections of one file's rows; `keys`: the resampling unit per row (None: each row alone)."""
    from pefomed.score.nlg import in_report_order

    specs, finish, notes = start_specs(rows, opts)
    codes = cluster_codes_of(keys)
    boot = make_bootstrap(len(rows), opts, codes)
    # every interval but METEOR's while its JVM is still scoring, then METEOR's
    early = evaluate_specs(specs, boot, opts, codes)
    done = {(section, name): entry for section, entries in early.items() for name, entry in entries.items()}
    specs = in_report_order(specs + finish())
    return evaluate_specs(specs, boot, opts, codes, done=done), specs, notes


def output_checks(rows: list, path: Path) -> dict[str, Any]:
    """Empty, punctuation-only and all-identical predictions: a 'win' over a file where the model
    produced nothing is a finding about that file, so it is flagged beside every number."""
    preds = [r.prediction.strip() for r in rows]
    counts = Counter(preds)
    top, top_n = counts.most_common(1)[0]
    empty = sum(1 for p in preds if not p)
    punct = sum(1 for p in preds if p and not any(ch.isalnum() for ch in p))
    flags = []
    if empty:
        flags.append(f"{empty} empty prediction{'s' if empty > 1 else ''}")
    if punct:
        flags.append(f"{punct} punctuation-only prediction{'s' if punct > 1 else ''}")
    if len(preds) > 1 and len(counts) == 1:
        flags.append(f"all {len(preds)} predictions identical ({top[:40]!r})")
    return {"path": str(path), "n": len(preds), "empty": empty, "punctuation_only": punct,
            "distinct": len(counts), "most_common": {"prediction": top, "count": top_n},
            "flags": flags, "degenerate": bool(flags)}


# ---------------------------------------------------------------- settings and entry point

def _interval_text(opts: ScoreOptions, resampling: dict[str, Any], multi: bool) -> dict[str, str]:
    level = f"{100 * (1 - opts.alpha):g}%"
    unit = opts.resample_unit
    over = "questions/reports" if unit == "sample" else f"{unit}s ({resampling['clusters']} clusters of up to " \
                                                        f"{resampling['largest_cluster']} rows)"
    boot = (f"{level} percentile bootstrap, {opts.bootstrap} resamples of {over}, seed {opts.seed}"
            if opts.bootstrap else f"none ({flag_of('score', 'bootstrap')} 0)")
    if opts.proportion_interval == "bootstrap":
        prop = "the percentile bootstrap, as other metrics"
    else:
        name = {"wilson": "Wilson score", "clopper-pearson": "Clopper-Pearson"}[opts.proportion_interval]
        prop = f"{level} {name}" + ("" if unit == "sample" else f" at the effective n for {unit} clusters")
    out = {"proportions": prop, "other": boot}
    if multi:
        out["runs"] = f"{level} t interval of the mean across runs (the table's interval)"
    out["description"] = (f"intervals: 0/1 accuracies {prop}; other metrics {boot}"
                          + ("; across runs: t interval of the mean" if multi else ""))
    return out


def _settings(opts: ScoreOptions, files: list[tuple[Path, str]], notes: dict[str, Any], tasks: set[str],
              resampling: dict[str, Any], multi: bool) -> dict[str, Any]:
    """Only the settings of the tasks present: a report-only file lists no VQA convention."""
    from pefomed.score import conventions

    settings: dict[str, Any] = {}
    if "vqa" in tasks:
        settings["convention"] = {"vqa": opts.vqa_convention}
        settings["normalization"] = conventions.normalization(opts.vqa_convention)
    if "report" in tasks:
        settings["tokenizer"] = conventions.tokenizer(opts.tokenizer)
        if opts.clinical:
            settings["clinical_uncertain"] = opts.uncertain
    settings["bootstrap"] = {"resamples": opts.bootstrap, "seed": opts.seed,
                             "interval": f"{100 * (1 - opts.alpha):g}% percentile", "unit": opts.resample_unit}
    settings["intervals"] = _interval_text(opts, resampling, multi)
    settings["resampling"] = resampling
    settings["alpha"] = opts.alpha
    settings["seeds"] = {"bootstrap": opts.seed}
    settings["files"] = [{"path": str(p), "sha256": _sha256(p), **({"side": side} if side else {})}
                         for p, side in files]
    settings.update(notes)
    return settings


def _sha256(path: Path) -> str:
    from pefomed.io import sha256_file

    return sha256_file(path)


def report_folder(out: Path | None, report: Path | None) -> Path | None:
    """Where the report goes: --report, else OUT's folder/report, else nowhere."""
    if report is not None:
        return Path(report)
    return None if out is None else Path(out).parent / "report"


def score_files(paths: list[Path], *, compare: Path | list[Path] | None = None, out: Path | None = None,
                report: Path | None = None, **options) -> dict:
    """Score one or several PRED.jsonl files (see module doc); write METRICS.json to `out` and the
    human report to `report` (default: next to `out`) when given. Returns the METRICS dict.

    `compare`: one file, or several (seeds of the B setting) against `paths` (seeds of A); the
    comparison resamples test ids (clusters) and, with several seeds, seeds too."""
    from pefomed.score.rows import read_rows

    opts = ScoreOptions.from_kwargs(options)
    paths = [Path(p) for p in paths]
    if not paths:
        raise UserError("give at least one predictions file")
    compare_paths = [] if compare is None else [Path(p) for p in ([compare] if isinstance(compare, (str, Path)) else compare)]
    all_rows = [read_rows(p, opts.task) for p in paths]
    keys_per_file = []
    for p, rows in zip(paths, all_rows):
        keys, used = cluster_keys(rows, row_images(p, rows), opts.resample_unit)
        keys_per_file.append((None if opts.resample_unit == "sample" else keys, resampling_info(opts.resample_unit, keys, used)))
    specs_a: list[list] = []
    if len(paths) == 1:
        sections, specs, notes = score_rows(all_rows[0], opts, keys_per_file[0][0])
        specs_a.append(specs)
        metrics: dict[str, Any] = dict(sections)
    else:
        per_run = []
        notes = {}
        for rows, (keys, _) in zip(all_rows, keys_per_file):
            sections, specs, notes = score_rows(rows, opts, keys)
            specs_a.append(specs)
            per_run.append(sections)
        metrics = across_runs(per_run, opts.alpha)
        metrics["runs"] = [{"path": str(p), **s} for p, s in zip(paths, per_run)]
    tasks = {r.task for rows in all_rows for r in rows}
    outputs = [{**output_checks(rows, p), **({"side": "a"} if compare_paths else {})} for p, rows in zip(paths, all_rows)]
    files = [(p, "a" if compare_paths else "") for p in paths]
    if compare_paths:
        rows_b = [read_rows(p, opts.task) for p in compare_paths]
        tasks |= {r.task for rows in rows_b for r in rows}
        outputs += [{**output_checks(rows, p), "side": "b"} for p, rows in zip(compare_paths, rows_b)]
        files += [(p, "b") for p in compare_paths]
        result = paired_comparison(all_rows, rows_b, paths, compare_paths, opts, specs_a=specs_a)
        metrics["compare"] = {"a": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
                              "b": str(compare_paths[0]) if len(compare_paths) == 1 else [str(p) for p in compare_paths],
                              "alpha": opts.alpha, "resample_unit": opts.resample_unit, **result,
                              "tests": _tests_text(opts, result["seeds"])}
    metrics["outputs"] = outputs
    metrics["settings"] = _settings(opts, files, notes, tasks, keys_per_file[0][1], len(paths) > 1)
    if out is not None:
        from pefomed.io import write_json

        write_json(out, metrics)
    folder = report_folder(out, report)
    if folder is not None:
        from pefomed.score.error_analysis import report_extras
        from pefomed.score.report import write_report

        # provenance, the majority-answer line and sampled rows with thumbnails: built only when a
        # report is written, and only the sampled rows' images are read
        write_report(metrics, folder, extras=report_extras(paths, all_rows, compare_paths, opts))
    return metrics


def _tests_text(opts: ScoreOptions, seeds: dict[str, int]) -> str:
    unit = opts.resample_unit
    if seeds["a"] > 1 or seeds["b"] > 1:
        how = (f"paired bootstrap over {unit}s and seeds: each resample draws test {unit}s and, on each side, "
               "training seeds with replacement, and averages the metric over the drawn seeds")
        return how if opts.bootstrap else f"no verdicts: {flag_of('score', 'bootstrap')} 0 and several seeds per side"
    article = "an" if unit[0] in "aeiou" else "a"
    mcn = (f"exact McNemar for 0/1 accuracies when no two compared questions share {article} {unit}"
           if unit != "sample" else "exact McNemar for 0/1 accuracies")
    boot = f"paired bootstrap over {unit}s (the interval must exclude 0)" if opts.bootstrap else \
        f"no bootstrap ({flag_of('score', 'bootstrap')} 0): other metrics get no verdict"
    return f"{mcn}; otherwise {boot}"
