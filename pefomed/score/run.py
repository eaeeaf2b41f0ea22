"""`pefomed score`: PRED.jsonl -> METRICS.json (+ terminal table + report).

One file: every metric with an interval (proportion intervals for 0/1 accuracies, a seeded
percentile bootstrap otherwise; resampling images, studies or patients by default, since one image
carries many questions). `compare`: a paired comparison on the same ids, optionally with several
training seeds per side. Several files (seeds of one setting): mean +- std across runs.

The options are declared once, in pefomed.options.score (ScoreOptions: the settings; ScoreCommand:
the command with its files); cli/ generates the command's flags from them.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from pefomed.errors import UserError
from pefomed.options import flag_of
from pefomed.options.score import MAX_BOOTSTRAP, PROPORTION_INTERVALS, RESAMPLE_UNITS, ScoreOptions  # noqa: F401 (re-exported)
from pefomed.score.report import SECTIONS


def metric_name_problem(metric: str) -> str | None:
    """Why `metric` ("section/name", as keyed in METRICS.json) is never a metric `pefomed score`
    writes, or None. The names come from the scorers' own tables (VQA subsets by question_type,
    organ or modality take any label: they depend on the data)."""
    from pefomed.metrics.nlg import N
    from pefomed.score.clinical import OBSERVATIONS
    from pefomed.score.vqa_section import GROUP_KEYS
    from pefomed.score.report_models import AVERAGES as REPORT_MODEL_AVERAGES
    from pefomed.score.report_models import CHEXBERT_CLASSES

    section, _, name = metric.partition("/")
    fixed = {
        "vqa": {"overall", "closed", "open", "closed_yesno_first_word"},
        "report": {*(f"BLEU-{k}" for k in range(1, N + 1)), "METEOR", "ROUGE-L", "CIDEr-D"},
        "clinical": {*(f"{m}_{avg}/{n}" for m in ("precision", "recall", "f1") for avg in ("micro", "macro")
                       for n in ("14", "5")),
                     *(f"{m}/{obs}" for m in ("precision", "recall", "f1") for obs in OBSERVATIONS)},
        "semantic": {"cosine"},
        "chexbert": {*(f"{m}_{avg}/{n}" for m in ("precision", "recall", "f1") for avg in REPORT_MODEL_AVERAGES
                       for n in ("14", "5")),
                     *(f"{m}/{c}" for m in ("precision", "recall", "f1") for c in CHEXBERT_CLASSES), "accuracy/5"},
        "radgraph": {"f1_simple", "f1_partial", "f1_complete"},
        "bertscore": {"f1"},
        "ratescore": {"ratescore"},
        "green": {"green"},
        "judge": {"vqa_correct", "report_likert", "report_likert/4"},
    }
    if section not in fixed:
        return f"no section {section!r} (sections: {', '.join(fixed)})"
    if name in fixed[section]:
        return None
    if section == "vqa" and name.partition("/")[0] in GROUP_KEYS and name.partition("/")[2]:
        return None
    examples = sorted(fixed[section])[:6]
    return (f"{section!r} has no metric {name!r} (e.g. {', '.join(f'{section}/{e}' for e in examples)}"
            + (f"; or vqa/{{{'|'.join(GROUP_KEYS)}}}/LABEL" if section == "vqa" else "") + ")")


def collect_specs(rows: list, opts: ScoreOptions, groups: list | None = None) -> tuple[list, dict[str, Any]]:
    """All metric specs for the rows, and settings/notes the sections report. `groups`: rows whose
    task/answer_type/meta define the VQA subsets (shared by the files of a comparison)."""
    from pefomed.score.nlg import in_report_order

    specs, finish, notes = _start_specs(rows, opts, groups)
    return in_report_order(specs + finish()), notes


def _start_specs(rows: list, opts: ScoreOptions, groups: list | None = None):
    """collect_specs in two halves: every spec but METEOR's, and a function that waits for the
    METEOR JVM scoring in the background (so that the caller can bootstrap the rest meanwhile)."""
    specs: list = []
    notes: dict[str, Any] = {}
    finish = list  # no METEOR: nothing to wait for
    from pefomed.score.vqa_section import vqa_metrics

    specs += vqa_metrics(rows, opts.vqa_convention, groups=groups)
    if any(r.task == "report" for r in rows):
        from pefomed.score.nlg import start_report_metrics

        # METEOR's JVM scores in the background while the other report metrics are computed
        report_specs, finish = start_report_metrics(rows, tokenizer=opts.tokenizer, meteor=opts.meteor, notes=notes,
                                                   progress=opts.progress)
        specs += report_specs
        if opts.clinical:
            from pefomed.score.clinical import clinical_metrics

            specs += clinical_metrics(rows, uncertain=opts.uncertain, progress=opts.progress)
        if opts.semantic:
            from pefomed.score.semantic import semantic_metrics

            specs += semantic_metrics(rows, notes=notes)
        if opts.chexbert or opts.radgraph or opts.bertscore:
            from pefomed.score import report_models as rm

            online, folder = opts.report_models_online, opts.report_models_dir
            if opts.chexbert:
                specs += rm.chexbert_metrics(rows, folder, online, notes=notes)
            if opts.radgraph:
                specs += rm.radgraph_metrics(rows, opts.radgraph, folder, online, notes=notes)
            if opts.bertscore:
                specs += rm.bertscore_metrics(rows, opts.bertscore, opts.bertscore_layers, online, notes=notes)
        if opts.ratescore or opts.green:
            from pefomed.score import ratescore_green as rg

            if opts.ratescore:
                specs += rg.ratescore_metrics(rows, opts.ratescore_ner_model, opts.ratescore_embedding_model,
                                              opts.report_models_online, notes=notes)
            if opts.green:
                specs += rg.green_metrics(rows, opts.green, opts.green_batch_size, opts.green_max_length,
                                          opts.report_models_online, notes=notes)
    if opts.judge_url or opts.judge_local:
        from pefomed.score.judge import judge_metrics

        specs += judge_metrics(rows, opts, notes=notes)
    return specs, finish, notes


# ---------------------------------------------------------------- resampling units (clusters)

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


# ---------------------------------------------------------------- one file

def _sections(specs: list, boot, opts: ScoreOptions, clusters=None, done: dict | None = None) -> dict[str, dict]:
    """{section: {metric: entry}} in the order of `specs`; `done`: entries already evaluated."""
    from pefomed.console import track

    done = dict(done or {})
    todo = [spec for spec in specs if (spec.section, spec.name) not in done]
    for spec in (track(todo, "metrics + intervals") if opts.progress and todo else todo):
        done[(spec.section, spec.name)] = spec.evaluate(boot, opts.alpha, proportion=opts.proportion_interval,
                                                        clusters=clusters)
    out: dict[str, dict] = {}
    for spec in specs:
        out.setdefault(spec.section, {})[spec.name] = done[(spec.section, spec.name)]
    return out


def _bootstrap(n: int, opts: ScoreOptions, clusters):
    from pefomed.score.stats import Bootstrap

    if not opts.bootstrap:
        return None
    return Bootstrap.make(n, opts.bootstrap, opts.seed, clusters=clusters, unit=opts.resample_unit)


def _codes(keys: list | None):
    from pefomed.score.stats import cluster_codes

    return None if keys is None else cluster_codes(keys)


def score_rows(rows: list, opts: ScoreOptions, keys: list | None = None) -> tuple[dict, list, dict]:
    """Sections of one file's rows; `keys`: the resampling unit per row (None: each row alone)."""
    from pefomed.score.nlg import in_report_order

    specs, finish, notes = _start_specs(rows, opts)
    codes = _codes(keys)
    boot = _bootstrap(len(rows), opts, codes)
    # every interval but METEOR's while its JVM is still scoring, then METEOR's
    early = _sections(specs, boot, opts, codes)
    done = {(section, name): entry for section, entries in early.items() for name, entry in entries.items()}
    specs = in_report_order(specs + finish())
    return _sections(specs, boot, opts, codes, done=done), specs, notes


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


# ---------------------------------------------------------------- paired comparison

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


def _align(files: list[tuple[Path, list]], unit: str) -> tuple[list[list], list]:
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


def _compare(rows_a: list[list], rows_b: list[list], paths_a: list[Path], paths_b: list[Path],
             opts: ScoreOptions, specs_a: list[list] | None = None) -> dict[str, Any]:
    """Paired comparison of the A files against the B files (each side: one or several seeds).
    `specs_a`: the A files' specs already computed for their own sections, reused where the
    aligned rows are those very rows in the same order (no second tokenization, METEOR JVM or
    clinical labelling of the same file)."""
    import numpy as np

    from pefomed.score.stats import decide, paired_difference

    aligned, keys = _align(list(zip(paths_a + paths_b, rows_a + rows_b)), opts.resample_unit)
    unit = opts.resample_unit
    keys = None if unit == "sample" else keys
    codes = _codes(keys)
    groups = aligned[0]
    def specs_of(i: int, rows: list) -> list:
        if specs_a is not None and i < len(paths_a) and len(rows) == len(rows_a[i]) \
                and all(x is y for x, y in zip(rows, rows_a[i])):
            return specs_a[i]
        return collect_specs(rows, opts, groups=groups)[0]

    specs = [specs_of(i, rows) for i, rows in enumerate(aligned)]
    k = len(paths_a)
    by_key = [{(s.section, s.name): s for s in file_specs} for file_specs in specs]
    boot = _bootstrap(len(groups), opts, codes)
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
    per_b = [_sections(s, boot, opts, codes) for s in specs[k:]]
    b_metrics = per_b[0] if len(per_b) == 1 else _across_runs(per_b, opts.alpha)
    return {"sections": sections, "b_metrics": b_metrics, "seeds": {"a": k, "b": len(paths_b)}}


def _across_runs(per_run: list[dict], alpha: float) -> dict[str, dict]:
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
        metrics = _across_runs(per_run, opts.alpha)
        metrics["runs"] = [{"path": str(p), **s} for p, s in zip(paths, per_run)]
    tasks = {r.task for rows in all_rows for r in rows}
    outputs = [{**output_checks(rows, p), **({"side": "a"} if compare_paths else {})} for p, rows in zip(paths, all_rows)]
    files = [(p, "a" if compare_paths else "") for p in paths]
    if compare_paths:
        rows_b = [read_rows(p, opts.task) for p in compare_paths]
        tasks |= {r.task for rows in rows_b for r in rows}
        outputs += [{**output_checks(rows, p), "side": "b"} for p, rows in zip(compare_paths, rows_b)]
        files += [(p, "b") for p in compare_paths]
        result = _compare(all_rows, rows_b, paths, compare_paths, opts, specs_a=specs_a)
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


# ---------------------------------------------------------------- terminal

def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.4f}"


def print_metrics(metrics: dict, *, out: Path | None = None, report: Path | None = None, cli: bool = False) -> None:
    """The metrics as Rich tables on the terminal, every number with its interval and the name of
    that interval; comparisons name the test behind each verdict. With `cli`, also say what was
    written (or that nothing was)."""
    from rich.table import Table

    from pefomed.console import console
    from pefomed.score.report import fmt_p, settings_lines

    settings = metrics.get("settings", {})
    level = f"{100 * (1 - settings.get('alpha', 0.05)):g}% CI"
    table = Table(title="pefomed score", show_lines=False)
    for col in ("section", "metric", "value", level, "interval", "n"):
        table.add_column(col, justify="right" if col in ("value", "n") else "left")
    multi = "runs" in metrics
    for section in SECTIONS:
        for name, entry in (metrics.get(section) or {}).items():
            if entry.get("unavailable"):
                table.add_row(section, name, "unavailable", entry["unavailable"], "", str(entry.get("n", "")))
                continue
            value = _fmt(entry.get("value"))
            if multi:
                value = f"{value} ± {entry.get('std', 0):.4f}"
            table.add_row(section, name, value, f"[{_fmt(entry.get('ci_low'))}, {_fmt(entry.get('ci_high'))}]",
                          entry.get("interval", ""), str(entry.get("n", "")))
    console.print(table)
    comp = metrics.get("compare")
    if comp:
        def files(x):
            return x if isinstance(x, str) else " + ".join(x)
        ct = Table(title=f"A = {files(comp['a'])}  vs  B = {files(comp['b'])}  (alpha {comp['alpha']})")
        for col in ("section", "metric", "A", "B", "A - B", f"{level} (bootstrap)", "p", "test", "verdict", "n"):
            ct.add_column(col)
        colors = {"win": "green", "loss": "red", "tie": "yellow"}
        for section, entries in comp["sections"].items():
            for name, e in entries.items():
                verdict = e.get("verdict")
                shown = f"[{colors[verdict]}]{verdict}[/]" if verdict else "no verdict"
                ct.add_row(section, name, _fmt(e.get("a")), _fmt(e.get("b")), _fmt(e.get("value")),
                           f"[{_fmt(e.get('ci_low'))}, {_fmt(e.get('ci_high'))}]", fmt_p(e.get("p_value")),
                           e.get("test") or "—", shown, str(e.get("n", "")))
        console.print(ct)
        console.print(f"verdicts: {comp.get('tests', '')}", highlight=False)
        for section, entries in comp["sections"].items():
            for name, e in entries.items():
                if e.get("note"):
                    console.print(f"  {section}/{name}: {e['note']}", highlight=False)
    for check in metrics.get("outputs", []):
        if check.get("flags"):
            side = f" ({check['side'].upper()})" if check.get("side") else ""
            console.print(f"[bold yellow]warning:[/] {check['path']}{side}: {'; '.join(check['flags'])}",
                          highlight=False)
    for line in settings_lines(settings):
        console.print(line, highlight=False, markup=False)
    if cli:
        folder = report_folder(out, report)
        if out is None and folder is None:
            console.print(f"[yellow]nothing written[/]: add {flag_of('score', 'out')} METRICS.json (and "
                          f"{flag_of('score', 'report')} DIR) to keep these numbers",
                          highlight=False)
        else:
            written = ([f"{out}"] if out is not None else [f"no METRICS.json (no {flag_of('score', 'out')})"]) + \
                ([f"{folder}/report.md", f"{folder}/report.html"] if folder is not None else [])
            console.print("wrote " + ", ".join(written), highlight=False)
