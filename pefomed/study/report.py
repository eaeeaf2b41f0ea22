"""The study report: study.json, study.md and study.html (inline SVG, nothing fetched).

Rows: per data set, each group of cells (model x adaptation x method) with each reported metric's
value and interval; with several seeds, mean +- std over seeds and a t interval of the mean.
Comparisons: each pair the study file asks for, scored by `pefomed score A... --compare B...`
(paired, clustered bootstrap over images and seeds, or exact McNemar where it applies), then the
Holm correction across all comparisons of the study, per metric. Verdicts after Holm: win/loss when
the adjusted p < alpha (sign of the difference), else tie. The summary counts wins, ties and losses
per comparison kind and metric, as arXiv 2411.04118 does for medical models against their bases.

Every number is computed by pefomed.score.run.score_files, the function behind `pefomed score`,
on the cells' PRED.jsonl files: the report can always be reproduced by hand with `pefomed score`.
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
        if a in groups and b in groups and a != b and (a, b) not in seen:
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


def _scored(study_dir: Path, files: list[Path], compare: list[Path] | None, opts: dict) -> dict:
    """`score_files(files, compare=compare, **opts)`, kept in STUDY_DIR/scores/ under a key made of
    the files' contents, the options and the pefomed version: a study run again (after a kill, or
    to add cells) re-scores only the groups whose predictions changed. Report data sets would
    otherwise start METEOR's JVM and redo every bootstrap on each run."""
    import hashlib
    import json

    from pefomed import __version__
    from pefomed.errors import UserError
    from pefomed.io import read_json, sha256_file
    from pefomed.score.run import score_files

    key = hashlib.sha256(json.dumps({"files": [sha256_file(f) for f in files],
                                     "compare": [sha256_file(f) for f in compare or []],
                                     "options": opts, "pefomed": __version__}, sort_keys=True).encode()).hexdigest()
    cached = study_dir / SCORES_DIR / f"{key}.json"
    if cached.is_file():
        try:
            return read_json(cached)
        except UserError:  # a damaged entry (read_json names every way it can fail): recomputed, never trusted
            pass
    write_json(cached, score_files(files, compare=compare, **opts))
    return read_json(cached)  # the same JSON values whether fresh or kept


def build_report(study: Study, study_dir: Path, cells: list[Unit]) -> dict:
    from pefomed.score.stats import holm

    opts = _score_options(study)
    groups: "OrderedDict[tuple, list[Unit]]" = OrderedDict()
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    tasks = {d.name: next(c.task for c in cells if c.data == d.name) for d in study.data}

    def preds(group):
        return [study_dir / c.folder / "pred.jsonl" for c in sorted(groups[group], key=lambda c: c.seed or 0)]

    def metrics_of(data):
        return study.score.metrics or DEFAULT_METRICS[tasks[data]]

    rows = []
    for group, members in groups.items():
        scored = _scored(study_dir, preds(group), None, opts)
        values = {}
        for metric in metrics_of(group[0]):
            e = _entry(scored, metric)
            if e is not None:
                values[metric] = {k: e.get(k) for k in ("value", "ci_low", "ci_high", "n", "std", "n_runs", "values",
                                                        "interval", "unavailable") if k in e}
        rows.append({"data": group[0], "model": group[1], "adaptation": group[2], "method": group[3],
                     "seeds": [c.seed for c in members if c.seed is not None],
                     "cells": [c.id for c in members], "metrics": values})

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
        comparisons.append({"kind": pair["kind"], "reference": pair["reference"], "data": a[0],
                            "a": {"model": a[1], "adaptation": a[2], "method": a[3], "label": _label(a)},
                            "b": {"model": b[1], "adaptation": b[2], "method": b[3], "label": _label(b)},
                            "seeds": scored["compare"].get("seeds"), "metrics": entries})

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
            for c in comparisons:
                if (c["kind"], c["reference"]) == kind and metric in c["metrics"]:
                    counts[c["metrics"][metric]["verdict_holm"] or "no verdict"] += 1
            if sum(counts.values()):
                summary.append({"kind": kind[0], "reference": kind[1], "metric": metric, **counts})

    report = {"study": study.name, "alpha": alpha, "score": opts,
              "holm": "Holm (1979) step-down correction across all comparisons of the study, per metric",
              "rows": rows, "comparisons": comparisons, "summary": summary,
              "selections": _selections(study_dir, cells)}
    write_json(study_dir / "study.json", report)
    with atomic_write(study_dir / "study.md") as handle:
        handle.write(markdown(report))
    with atomic_write(study_dir / "study.html") as handle:
        handle.write(to_html(report))
    return report


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
             f"Values with their {level} interval; with several seeds, mean ± std over seeds and a t interval "
             "of the mean. Differences are A − B, paired; p-values are adjusted with Holm across the study's "
             "comparisons (per metric); verdicts use the adjusted p.", ""]
    for data in OrderedDict.fromkeys(r["data"] for r in report["rows"]):
        rows = [r for r in report["rows"] if r["data"] == data]
        metrics = list(OrderedDict.fromkeys(m for r in rows for m in r["metrics"]))
        lines += [f"## {data}", "", "| model | adaptation | method | seeds | " + " | ".join(metrics) + " |",
                  "|---|---|---|---|" + "---|" * len(metrics)]
        for r in rows:
            lines.append(f"| {r['model']} | {r['adaptation']} | {r['method'] or '—'} | {len(r['seeds']) or '—'} | "
                         + " | ".join(_cell_text(r["metrics"].get(m)) for m in metrics) + " |")
        comps = [c for c in report["comparisons"] if c["data"] == data]
        if comps:
            lines += ["", f"### Comparisons ({data})", "",
                      "| kind | A | B | metric | A − B | interval | p | p (Holm) | verdict | test |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for c in comps:
                for metric, e in c["metrics"].items():
                    lines.append(f"| {c['kind']} | {c['a']['label']} | {c['b']['label']} | {metric} | "
                                 f"{_f(e['difference'])} | [{_f(e['ci_low'])}, {_f(e['ci_high'])}] | {_p(e['p_value'])} | "
                                 f"{_p(e['p_holm'])} | {e['verdict_holm'] or '—'} | {e['test'] or '—'} |")
        lines.append("")
    if report["summary"]:
        lines += ["## Summary (wins / ties / losses of A against B, after Holm)", "",
                  "| comparison | metric | wins | ties | losses |", "|---|---|---|---|---|"]
        for s in report["summary"]:
            what = {"base": "model vs its base", "method": f"method vs {s['reference']}",
                    "adaptation": f"adaptation vs {s['reference']}"}[s["kind"]]
            lines.append(f"| {what} | {s['metric']} | {s['win']} | {s['tie']} | {s['loss']} |")
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
        else:
            body.append(f"<p>{html.escape(' '.join(lines))}</p>")
    metrics = list(OrderedDict.fromkeys(m for c in report["comparisons"] for m in c["metrics"]))
    for metric in metrics:
        items = [(f"{c['data']}: {c['a']['label']} − {c['b']['label']}", e["difference"], e["ci_low"], e["ci_high"],
                  e["verdict_holm"]) for c in report["comparisons"] for m, e in c["metrics"].items() if m == metric]
        body.append(f"<h3>Forest plot: {html.escape(metric)} (A − B, interval, verdict after Holm)</h3>")
        body.append(forest_svg(items, f"differences in {metric}"))
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Study {html.escape(report['study'])}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
