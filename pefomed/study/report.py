"""The study report: study.json, study.md and study.html (inline SVG, nothing fetched).

Rows: per data set, each group of cells (model x adaptation x method) with each reported metric's
value and interval; with several seeds, mean +- std over seeds and a percentile bootstrap over
images within seeds and over seeds (the resampling of the comparisons, pefomed.score.stats), so
seeds that agree still show the test set's sampling error (the t interval over seeds is kept
beside it as t_ci_low/t_ci_high). Rows and comparisons whose predictions `pefomed score` flags
as degenerate (empty, punctuation-only or all identical: pefomed.score.run.output_checks) carry
that flag in study.json, study.md and study.html.
Comparisons: each pair the study file asks for, scored by `pefomed score A... --compare B...`
(paired, clustered bootstrap over images and seeds, or exact McNemar where it applies), then the
Holm correction across all comparisons of the study, per metric. Verdicts after Holm: win/loss when
the adjusted p < alpha (sign of the difference), else tie. The summary counts wins, ties and losses
per comparison kind and metric, as arXiv 2411.04118 does for medical models against their bases.

Visual reliance: per model (and method), the score with the image minus the score of each blind
or ablation adaptation repeating it (blank, shuffled, mismatched image), with the paired bootstrap
interval over images (and seeds) of a comparison, and the share of the score the model keeps
without a usable image (arXiv 2603.03437 reports such visual-reliance scores).

Every value, comparison and single-seed interval is computed by pefomed.score.run.score_files,
the function behind `pefomed score`, on the cells' PRED.jsonl files: those can always be
reproduced by hand with `pefomed score`; a several-seed row's bootstrap interval is computed here,
from the same per-sample statistics and resampling code as a comparison of those seeds.
"""

from __future__ import annotations

import html
from collections import OrderedDict
from pathlib import Path

from pefomed.io import atomic_write, write_json
from pefomed.study.plan import Unit
from pefomed.study.spec import Study

DEFAULT_METRICS = {"vqa": ["vqa/overall", "vqa/closed", "vqa/open"],
                   "report": ["report/BLEU-4", "report/METEOR", "report/ROUGE-L", "report/CIDEr-D"]}


def _label(group: tuple) -> str:
    _, model, adaptation, method = group
    return f"{model} · {adaptation}" + (f" ({method})" if method else "")


def _score_options(study: Study) -> dict:
    s = study.score
    return {"bootstrap": s.bootstrap, "seed": s.seed, "alpha": s.alpha, "vqa_convention": s.vqa_convention}


def _entry(metrics: dict, metric: str) -> dict | None:
    section, _, name = metric.partition("/")
    return (metrics.get(section) or {}).get(name)


def _pairs(study: Study, groups: dict) -> list[dict]:
    """The comparisons the study asks for, as (kind, A group, B group), in a stable order."""
    models = {m.name: m for m in study.models}
    adaptations = {a.name: a for a in study.adaptations}
    out, seen = [], set()

    def add(kind, reference, a, b):
        # a pair already compared the other way round (sft vs zero-shot, then zero-shot vs sft under a
        # second reference) is the same test: once in the report and once in the Holm family
        if a in groups and b in groups and a != b and (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            out.append({"kind": kind, "reference": reference, "a": a, "b": b})

    for comparison in study.comparisons:
        for group in groups:
            data, model, adaptation, method = group
            if comparison.kind == "base":
                base = models[model].base
                if base is not None:
                    add("base", None, group, (data, base, adaptation, method))
            elif comparison.kind == "method":
                if method is not None and method != comparison.reference:
                    add("method", comparison.reference, group, (data, model, adaptation, comparison.reference))
            elif adaptation != comparison.reference:
                ref = adaptations[comparison.reference]
                ref_methods = ref.methods or [None]
                # a fine-tuned reference pairs method with method; otherwise its single group
                ref_method = method if method in ref_methods else (ref_methods[0] if len(ref_methods) == 1 else None)
                if ref_method is not None or not ref.methods:
                    add("adaptation", comparison.reference, group, (data, model, comparison.reference, ref_method))
    return out


SCORES_DIR = "scores"
CHECKSUM_SUFFIX = ".sha256"  # beside each kept score: "<sha256 of its bytes>  <name>", as sha256sum writes
SEED_INTERVALS = "seed_intervals"  # the kept score's key for a several-seed row's bootstrap intervals


def _warn(message: str) -> None:
    from pefomed.console import console

    console.print(f"[bold yellow]warning:[/] {message}", highlight=False)


def _kept(cached: Path) -> dict | None:
    """A kept score, only when its bytes match the sha256 written beside it; else None, with a
    warning naming the file (a damaged, edited or unverifiable entry is recomputed, never used)."""
    from pefomed.errors import UserError
    from pefomed.io import read_json, sha256_file

    checksum = cached.with_name(cached.name + CHECKSUM_SUFFIX)
    try:
        recorded = checksum.read_text(encoding="utf-8").split()[0] if checksum.is_file() else None
    except (OSError, UnicodeDecodeError, IndexError):
        recorded = None
    if recorded is None:
        _warn(f"kept score {cached} has no readable checksum ({checksum.name}): recomputed, not used")
        return None
    if sha256_file(cached) != recorded:
        _warn(f"kept score {cached} does not match its sha256 in {checksum.name} (edited or damaged): "
              "recomputed, not used")
        return None
    try:
        return read_json(cached)
    except UserError as err:
        _warn(f"kept score {cached} cannot be read ({err}): recomputed, not used")
        return None


def _scored(study_dir: Path, files: list[Path], compare: list[Path] | None, opts: dict) -> dict:
    """`score_files(files, compare=compare, **opts)`, kept in STUDY_DIR/scores/ under a key made of
    the files' contents, the options and the pefomed version: a study run again (after a kill, or
    to add cells) re-scores only the groups whose predictions changed. Report data sets would
    otherwise start METEOR's JVM and redo every bootstrap on each run.

    Each kept file has its sha256 beside it (NAME.json.sha256); on reuse a mismatch, or a missing
    checksum, is recomputed with a warning naming the file. Several files without `compare` (the
    seeds of one row) also keep their bootstrap intervals (`seed_intervals`)."""
    import hashlib
    import json

    from pefomed import __version__
    from pefomed.io import read_json, sha256_file
    from pefomed.score.run import score_files

    key = hashlib.sha256(json.dumps({"files": [sha256_file(f) for f in files],
                                     "compare": [sha256_file(f) for f in compare or []],
                                     "options": opts, "pefomed": __version__,
                                     "seed_intervals": compare is None and len(files) > 1},
                                    sort_keys=True).encode()).hexdigest()
    cached = study_dir / SCORES_DIR / f"{key}.json"
    if cached.is_file():
        kept = _kept(cached)
        if kept is not None:
            return kept
    scored = score_files(files, compare=compare, **opts)
    if compare is None and len(files) > 1:
        scored[SEED_INTERVALS] = seed_intervals(files, opts)
    write_json(cached, scored)
    with atomic_write(cached.with_name(cached.name + CHECKSUM_SUFFIX)) as handle:
        handle.write(f"{sha256_file(cached)}  {cached.name}\n")
    return read_json(cached)  # the same JSON values whether fresh or kept


def seed_intervals(files: list[Path], opts: dict) -> dict:
    """Per metric, the (1 - alpha) percentile bootstrap of a several-seed row's value (the mean
    over seeds of the metric): each resample draws test images (the resampling unit's clusters;
    the same draw for every seed, since the seeds answer the same questions) and training seeds
    with replacement, as the paired comparison does on each side (pefomed.score.stats.
    paired_difference). Unlike the t interval over seeds it keeps the test set's sampling error
    when the seeds agree. {"sections": {section: {metric: {ci_low, ci_high}}}, "description",
    "seeds"}; without resamples, or when the seeds' files hold different ids, the reason instead
    ("unavailable") and the report keeps the t interval."""
    import numpy as np

    from pefomed.errors import UserError
    from pefomed.score.rows import read_rows
    from pefomed.options.score import ScoreOptions
    from pefomed.score.compare import align
    from pefomed.score.resampling import cluster_codes_of, make_bootstrap
    from pefomed.score.specs import collect_specs
    from pefomed.score.stats import _clean, _seed_mean, interval, seed_draws

    o = ScoreOptions.from_kwargs(opts)
    level = f"{100 * (1 - o.alpha):g}%"
    if not o.bootstrap:
        return {"unavailable": "no bootstrap resamples (bootstrap: 0): t interval over seeds", "seeds": len(files)}
    rows = [read_rows(p, o.task) for p in files]
    try:
        aligned, keys = align(list(zip(files, rows)), o.resample_unit)
    except UserError as err:
        return {"unavailable": f"the seeds' files do not pair by id ({err}): t interval over seeds",
                "seeds": len(files)}
    codes = None if o.resample_unit == "sample" else cluster_codes_of(keys)
    boot = make_bootstrap(len(aligned[0]), o, codes)
    specs = [{(spec.section, spec.name): spec for spec in collect_specs(r, o, groups=aligned[0])[0]} for r in aligned]
    draws = seed_draws(len(files), boot.resamples, boot.seed, 0)
    sections: dict[str, dict] = {}
    for key, spec in specs[0].items():
        same = [m.get(key) for m in specs]
        if any(x is None or (x.extra and "unavailable" in x.extra) for x in same):
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            low, high = interval(_seed_mean([x.stats for x in same], spec.fn, boot, draws), o.alpha)
        sections.setdefault(key[0], {})[key[1]] = {"ci_low": _clean(low), "ci_high": _clean(high)}
    unit = o.resample_unit
    over = "questions/reports" if unit == "sample" else f"{unit}s"
    return {"sections": sections, "seeds": len(files),
            "description": f"{level} percentile bootstrap over {over} within seeds and over seeds "
                           f"({len(files)} seeds, {o.bootstrap} resamples, seed {o.seed})"}


def _degenerate(outputs: list[dict], members: list[Unit]) -> list[dict]:
    """The cells whose predictions `pefomed score` flagged (its output_checks, in the order of the
    files scored: `members`), each with its flags."""
    return [{"cell": cell.id, "seed": cell.seed, "flags": list(check.get("flags") or [])}
            for check, cell in zip(outputs, members) if check.get("degenerate")]


def _flag_text(flagged: list[dict]) -> str:
    """'seed 0: 12 empty predictions; seed 1: ...' ('|' shown as '¦': the text goes in table cells)."""
    return "; ".join((f"seed {d['seed']}: " if d.get("seed") is not None else "") + ", ".join(d["flags"])
                     for d in flagged).replace("|", "¦")


def build_report(study: Study, study_dir: Path, cells: list[Unit]) -> dict:
    from pefomed.score.stats import holm

    opts = _score_options(study)
    groups: "OrderedDict[tuple, list[Unit]]" = OrderedDict()
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    tasks = {d.name: next(c.task for c in cells if c.data == d.name) for d in study.data}

    def members_of(group):
        return sorted(groups[group], key=lambda c: c.seed or 0)

    def preds(group):
        return [study_dir / c.folder / "pred.jsonl" for c in members_of(group)]

    def metrics_of(data):
        return study.score.metrics or DEFAULT_METRICS[tasks[data]]

    rows = []
    for group, members in groups.items():
        scored = _scored(study_dir, preds(group), None, opts)
        boot = scored.get(SEED_INTERVALS) or {}
        values = {}
        for metric in metrics_of(group[0]):
            e = _entry(scored, metric)
            if e is not None:
                values[metric] = {k: e.get(k) for k in ("value", "ci_low", "ci_high", "n", "std", "n_runs", "values",
                                                        "interval", "unavailable") if k in e}
                b = _entry(boot.get("sections") or {}, metric)
                if b is not None and not e.get("unavailable"):
                    values[metric].update({"t_ci_low": e.get("ci_low"), "t_ci_high": e.get("ci_high"),
                                           "ci_low": b["ci_low"], "ci_high": b["ci_high"],
                                           "interval": "bootstrap over images within seeds and over seeds"})
        interval_note = boot.get("description") or boot.get("unavailable")
        degenerate = _degenerate(scored.get("outputs") or [], members_of(group))
        rows.append({"data": group[0], "model": group[1], "adaptation": group[2], "method": group[3],
                     "seeds": [c.seed for c in members if c.seed is not None],
                     "cells": [c.id for c in members], "metrics": values,
                     **({"intervals": interval_note} if interval_note else {}),
                     "degenerate": degenerate})

    comparisons = []
    for pair in _pairs(study, groups):
        a, b = pair["a"], pair["b"]
        scored = _scored(study_dir, preds(a), preds(b), opts)
        sections = scored["compare"]["sections"]
        entries = {}
        for metric in metrics_of(a[0]):
            section, _, name = metric.partition("/")
            e = (sections.get(section) or {}).get(name)
            if e is not None:
                entries[metric] = {"difference": e.get("value"), "ci_low": e.get("ci_low"), "ci_high": e.get("ci_high"),
                                   "a": e.get("a"), "b": e.get("b"), "p_value": e.get("p_value"),
                                   "verdict": e.get("verdict"), "test": e.get("test"), "n": e.get("n")}
        outputs = scored.get("outputs") or []
        flagged = {"a": _degenerate([o for o in outputs if o.get("side") == "a"], members_of(a)),
                   "b": _degenerate([o for o in outputs if o.get("side") == "b"], members_of(b))}
        comparisons.append({"kind": pair["kind"], "reference": pair["reference"], "data": a[0],
                            "a": {"model": a[1], "adaptation": a[2], "method": a[3], "label": _label(a)},
                            "b": {"model": b[1], "adaptation": b[2], "method": b[3], "label": _label(b)},
                            "seeds": scored["compare"].get("seeds"), "metrics": entries,
                            "degenerate": {side: cells for side, cells in flagged.items() if cells}})

    # Holm across the study's comparisons, one family per metric
    alpha = study.score.alpha
    all_metrics = list(OrderedDict.fromkeys(m for c in comparisons for m in c["metrics"]))
    for metric in all_metrics:
        holders = [c["metrics"][metric] for c in comparisons if metric in c["metrics"]]
        for entry, adjusted in zip(holders, holm([e["p_value"] for e in holders])):
            entry["p_holm"] = adjusted
            diff = entry["difference"]
            if adjusted is None or diff is None:
                entry["verdict_holm"] = None
            else:
                entry["verdict_holm"] = ("win" if diff > 0 else "loss") if adjusted < alpha and diff != 0 else "tie"

    summary = []
    for kind in OrderedDict.fromkeys((c["kind"], c["reference"]) for c in comparisons):
        for metric in all_metrics:
            counts = {"win": 0, "tie": 0, "loss": 0, "no verdict": 0}
            flagged = 0
            for c in comparisons:
                if (c["kind"], c["reference"]) == kind and metric in c["metrics"]:
                    counts[c["metrics"][metric]["verdict_holm"] or "no verdict"] += 1
                    flagged += bool(c["degenerate"])
            if sum(counts.values()):
                summary.append({"kind": kind[0], "reference": kind[1], "metric": metric, **counts,
                                "with_degenerate_side": flagged})

    report = {"study": study.name, "alpha": alpha, "score": opts,
              "holm": "Holm (1979) step-down correction across all comparisons of the study, per metric",
              "rows": rows, "comparisons": comparisons, "summary": summary,
              "visual_reliance": _visual_reliance(study, groups, lambda g: _scored(study_dir, preds(g[0]), preds(g[1]),
                                                                                 opts), metrics_of),
              "selections": _selections(study_dir, cells)}
    write_json(study_dir / "study.json", report)
    with atomic_write(study_dir / "study.md") as handle:
        handle.write(markdown(report))
    with atomic_write(study_dir / "study.html") as handle:
        handle.write(to_html(report))
    return report


def _visual_reliance(study: Study, groups, score_pair, metrics_of) -> list[dict]:
    """For each blind or ablation group, its reference group (same data set, model and method, the
    adaptation it repeats) scored against it: difference = with the image - without a usable one,
    paired over images (and seeds), with `retained` = the control's score / the score with the image."""
    adaptations = {a.name: a for a in study.adaptations}
    out = []
    for group in groups:
        data, model, adaptation, method = group
        control = adaptations[adaptation]
        if control.kind not in ("blind", "ablation"):
            continue
        reference = (data, model, control.of, method)
        if reference not in groups:
            continue
        sections = score_pair((reference, group))["compare"]["sections"]
        entries = {}
        for metric in metrics_of(data):
            section, _, name = metric.partition("/")
            e = (sections.get(section) or {}).get(name)
            if e is None:
                continue
            a, b = e.get("a"), e.get("b")
            entries[metric] = {"with_image": a, "control": b, "difference": e.get("value"), "ci_low": e.get("ci_low"),
                               "ci_high": e.get("ci_high"), "p_value": e.get("p_value"), "n": e.get("n"),
                               "retained": (b / a) if a not in (None, 0) and b is not None else None}
        out.append({"data": data, "model": model, "method": method, "reference": control.of,
                    "control": adaptation, "image": "none (blind)" if control.kind == "blind" else control.image,
                    "seeds": sorted({c.seed for c in groups[group] if c.seed is not None}), "metrics": entries})
    return out


def _selections(study_dir: Path, cells: list[Unit]) -> list[dict]:
    from pefomed.io import read_json

    out = []
    for sid in OrderedDict.fromkeys(c.selection for c in cells if c.selection):
        path = study_dir / "selections" / sid / "selection.json"
        if path.is_file():
            sel = read_json(path)
            out.append({"selection": sid, "model": sel["model"], "data": sel["data"], "adaptation": sel["adaptation"],
                        "seed": sel["seed"], "metric": sel["metric"], "chosen": sel["chosen"]["name"],
                        "candidates": {c["name"]: c["value"] for c in sel["candidates"]}})
    return out


def _f(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _p(x) -> str:
    return "—" if x is None else ("<0.001" if x < 0.001 else f"{x:.3f}")


DEGENERATE_MARK = "⚠ degenerate"


def _sides_text(c: dict) -> str:
    """'⚠ degenerate A (seed 0: 12 empty predictions)' for a comparison with a flagged side; '' if none."""
    flagged = c.get("degenerate") or {}
    return "; ".join(f"{DEGENERATE_MARK} {side.upper()} ({_flag_text(flagged[side])})"
                     for side in ("a", "b") if flagged.get(side))


def _cell_text(e: dict | None) -> str:
    if not e:
        return "—"
    if e.get("unavailable"):
        return "unavailable"
    spread = f" ± {_f(e['std'])}" if e.get("n_runs", 1) > 1 else ""
    return f"{_f(e.get('value'))}{spread} [{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}]"


def markdown(report: dict) -> str:
    level = f"{100 * (1 - report['alpha']):g}%"
    lines = [f"# Study {report['study']}", "",
             f"Values with their {level} interval; with one seed, the `pefomed score` interval; with several "
             "seeds, mean ± std over seeds and a percentile bootstrap over images within seeds and over seeds "
             "(the table's note says which). Differences are A − B, paired; p-values are adjusted with Holm "
             "across the study's comparisons (per metric); verdicts use the adjusted p. Outputs: "
             f"{DEGENERATE_MARK} when `pefomed score` flags a side's predictions as degenerate (empty, "
             "punctuation-only or all identical).", ""]
    for data in OrderedDict.fromkeys(r["data"] for r in report["rows"]):
        rows = [r for r in report["rows"] if r["data"] == data]
        metrics = list(OrderedDict.fromkeys(m for r in rows for m in r["metrics"]))
        lines += [f"## {data}", ""]
        notes = list(OrderedDict.fromkeys(r["intervals"] for r in rows if r.get("intervals")))
        if notes:
            lines += ["intervals with several seeds: " + "; ".join(notes), ""]
        lines += ["| model | adaptation | method | seeds | " + " | ".join(metrics) + " | outputs |",
                  "|---|---|---|---|" + "---|" * len(metrics) + "---|"]
        for r in rows:
            flag = f"{DEGENERATE_MARK}: {_flag_text(r['degenerate'])}" if r.get("degenerate") else "ok"
            lines.append(f"| {r['model']} | {r['adaptation']} | {r['method'] or '—'} | {len(r['seeds']) or '—'} | "
                         + " | ".join(_cell_text(r["metrics"].get(m)) for m in metrics) + f" | {flag} |")
        comps = [c for c in report["comparisons"] if c["data"] == data]
        if comps:
            lines += ["", f"### Comparisons ({data})", "",
                      "| kind | A | B | metric | A − B | interval | p | p (Holm) | verdict | test | outputs |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for c in comps:
                for metric, e in c["metrics"].items():
                    lines.append(f"| {c['kind']} | {c['a']['label']} | {c['b']['label']} | {metric} | "
                                 f"{_f(e['difference'])} | [{_f(e['ci_low'])}, {_f(e['ci_high'])}] | {_p(e['p_value'])} | "
                                 f"{_p(e['p_holm'])} | {e['verdict_holm'] or '—'} | {e['test'] or '—'} | "
                                 f"{_sides_text(c) or 'ok'} |")
        lines.append("")
    reliance = report.get("visual_reliance") or []
    if reliance:
        lines += ["## Visual reliance (score with the image − score without a usable one)", "",
                  f"Paired over images (and seeds), {level} bootstrap interval; retained: the control's score as "
                  "a share of the score with the image (near 1: the answers barely use the image).", "",
                  "| data | model | method | with image | control | image shown | metric | with image | control | "
                  "difference | interval | retained |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for v in reliance:
            for metric, e in v["metrics"].items():
                retained = "—" if e["retained"] is None else f"{100 * e['retained']:.0f}%"
                lines.append(f"| {v['data']} | {v['model']} | {v['method'] or '—'} | {v['reference']} | "
                             f"{v['control']} | {v['image']} | {metric} | {_f(e['with_image'])} | {_f(e['control'])} | "
                             f"{_f(e['difference'])} | [{_f(e['ci_low'])}, {_f(e['ci_high'])}] | {retained} |")
        lines.append("")
    flagged = [r for r in report["rows"] if r.get("degenerate")]
    if flagged:
        lines += ["## Degenerate outputs", "",
                  "Numbers of these rows, and every comparison with them on a side, describe predictions that "
                  "`pefomed score` flags (empty, punctuation-only or all identical); a win over such a side is "
                  "a finding about its outputs.", ""]
        for r in flagged:
            lines.append(f"- {r['data']}: {_label((r['data'], r['model'], r['adaptation'], r['method']))}: "
                         f"{_flag_text(r['degenerate'])}")
        lines.append("")
    if report["summary"]:
        lines += ["## Summary (wins / ties / losses of A against B, after Holm)", "",
                  f"| comparison | metric | wins | ties | losses | {DEGENERATE_MARK} side |", "|---|---|---|---|---|---|"]
        for s in report["summary"]:
            what = {"base": "model vs its base", "method": f"method vs {s['reference']}",
                    "adaptation": f"adaptation vs {s['reference']}"}[s["kind"]]
            lines.append(f"| {what} | {s['metric']} | {s['win']} | {s['tie']} | {s['loss']} | "
                         f"{s.get('with_degenerate_side', 0)} |")
        lines.append("")
    if report["selections"]:
        lines += ["## Prompt selection (validation split only)", "", "| data | model | adaptation | seed | metric | chosen | candidates |",
                  "|---|---|---|---|---|---|---|"]
        for s in report["selections"]:
            cands = ", ".join(f"{k}: {_f(v)}" for k, v in s["candidates"].items())
            lines.append(f"| {s['data']} | {s['model']} | {s['adaptation']} | {'—' if s['seed'] is None else s['seed']} | "
                         f"{s['metric']} | {s['chosen']} | {cands} |")
        lines.append("")
    return "\n".join(lines)


def forest_svg(items: list[tuple[str, float | None, float | None, float | None, str | None]], title: str) -> str:
    """A forest plot: one row per comparison, the difference as a point, its interval as a line, and
    the zero line. items: (label, difference, low, high, verdict)."""
    row_h, label_w, plot_w, right_w = 22, 340, 360, 90
    finite = [v for _, d, lo, hi, _ in items for v in (d, lo, hi) if v is not None]
    span = max([abs(v) for v in finite] + [1e-3]) * 1.1
    lo_x, hi_x = -span, span
    height = row_h * len(items) + 46

    def x(v: float) -> float:
        return label_w + (v - lo_x) / (hi_x - lo_x) * plot_w

    colors = {"win": "#1b7f3b", "loss": "#b3261e", "tie": "#555555"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + right_w}" height="{height}" '
             f'font-family="sans-serif" font-size="12" role="img"><title>{html.escape(title)}</title>',
             f'<line x1="{x(0):.1f}" y1="8" x2="{x(0):.1f}" y2="{height - 28}" stroke="#999" stroke-dasharray="3,3"/>']
    for i, (label, d, low, high, verdict) in enumerate(items):
        y = 20 + i * row_h
        color = colors.get(verdict or "", "#555555")
        parts.append(f'<text x="{label_w - 8}" y="{y + 4}" text-anchor="end">{html.escape(label)}</text>')
        if low is not None and high is not None:
            parts.append(f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="{color}" stroke-width="2"/>')
        if d is not None:
            parts.append(f'<rect x="{x(d) - 4:.1f}" y="{y - 4}" width="8" height="8" fill="{color}"/>')
        parts.append(f'<text x="{label_w + plot_w + 8}" y="{y + 4}" fill="{color}">{html.escape(verdict or "—")}</text>')
    for v in (lo_x, lo_x / 2, 0.0, hi_x / 2, hi_x):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 10}" text-anchor="middle">{v:+.2g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _md_table_html(md_lines: list[str]) -> str:
    out = ["<table>"]
    for i, line in enumerate(md_lines):
        if i == 1:
            continue
        cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
        tag = "th" if i == 0 else "td"
        out.append("<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def to_html(report: dict) -> str:
    body = []
    for block in markdown(report).split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        if lines[0].startswith("|"):
            body.append(_md_table_html(lines))
        elif lines[0].startswith("#"):
            level = len(lines[0]) - len(lines[0].lstrip("#"))
            body.append(f"<h{level}>{html.escape(lines[0].lstrip('#').strip())}</h{level}>")
            if len(lines) > 1:
                rest = lines[1:]
                body.append(_md_table_html(rest) if rest[0].startswith("|") else f"<p>{html.escape(' '.join(rest))}</p>")
        elif all(line.startswith("- ") for line in lines):
            body.append('<ul class="degenerate">' + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines)
                        + "</ul>")
        else:
            body.append(f"<p>{html.escape(' '.join(lines))}</p>")
    metrics = list(OrderedDict.fromkeys(m for c in report["comparisons"] for m in c["metrics"]))

    def forest_label(c: dict) -> str:
        sides = "".join(side.upper() for side in ("a", "b") if (c.get("degenerate") or {}).get(side))
        return f"{c['data']}: {c['a']['label']} − {c['b']['label']}" + (f" [{DEGENERATE_MARK} {sides}]" if sides else "")

    for metric in metrics:
        items = [(forest_label(c), e["difference"], e["ci_low"], e["ci_high"],
                  e["verdict_holm"]) for c in report["comparisons"] for m, e in c["metrics"].items() if m == metric]
        body.append(f"<h3>Forest plot: {html.escape(metric)} (A − B, interval, verdict after Holm)</h3>")
        body.append(forest_svg(items, f"differences in {metric}"))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Study {html.escape(report['study'])}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
