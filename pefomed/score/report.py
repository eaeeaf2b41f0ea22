"""A self-contained report a person opens: report.md and report.html (one file, inline SVG plots).

Plots are hand-made SVG rather than matplotlib: they are a handful of bars and intervals, and this
keeps the scoring path free of a plotting dependency.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from pefomed.io import atomic_write

SECTIONS = ("vqa", "report", "clinical", "semantic", "judge")  # METRICS.json sections, in report order


def _f(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def _interval_svg(items: list[tuple[str, float | None, float | None, float | None]], *, lo: float = 0.0,
                  hi: float = 1.0, zero: float | None = None, title: str = "") -> str:
    """Horizontal bars (or points, for a forest plot) with interval whiskers. items: (label, value,
    low, high)."""
    row_h, label_w, plot_w = 22, 260, 380
    height = row_h * len(items) + 40
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return label_w + (min(max(v, lo), hi) - lo) / span * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 80}" height="{height}" '
             f'font-family="sans-serif" font-size="12" role="img"><title>{html.escape(title)}</title>']
    base = x(zero) if zero is not None else x(lo)
    parts.append(f'<line x1="{base:.1f}" y1="10" x2="{base:.1f}" y2="{height - 25}" stroke="#888"/>')
    for i, (label, value, low, high) in enumerate(items):
        y = 20 + i * row_h
        parts.append(f'<text x="{label_w - 6}" y="{y + 4}" text-anchor="end">{html.escape(label)}</text>')
        if value is None:
            continue
        if zero is None:
            parts.append(f'<rect x="{x(lo):.1f}" y="{y - 7}" width="{max(x(value) - x(lo), 0):.1f}" height="14" fill="#6a9fd8"/>')
        else:
            parts.append(f'<circle cx="{x(value):.1f}" cy="{y}" r="4" fill="#333"/>')
        if low is not None and high is not None:
            parts.append(f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="#222" stroke-width="1.5"/>')
            for end in (low, high):
                parts.append(f'<line x1="{x(end):.1f}" y1="{y - 5}" x2="{x(end):.1f}" y2="{y + 5}" stroke="#222"/>')
        parts.append(f'<text x="{label_w + plot_w + 6}" y="{y + 4}">{_f(value)}</text>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{x(v):.1f}" y="{height - 8}" text-anchor="middle">{v:.2g}</text>')
    parts.append("</svg>")
    return "".join(parts)


# Ranges of metrics that are not in [0, 1]; CIDEr-D is a x10-scaled mean of cosines.
RANGES = {"CIDEr-D": (0.0, 10.0)}


def settings_lines(settings: dict) -> list[str]:
    """The settings a reader needs to interpret the numbers, as plain sentences (shared by the
    terminal and the report); only the settings of the tasks present are in `settings`."""
    lines = []
    if "convention" in settings:
        lines.append(f"VQA convention: {settings['convention'].get('vqa')}; normalization: {settings.get('normalization')}")
    if "tokenizer" in settings:
        lines.append(f"Report tokenizer: {settings['tokenizer'].get('name')}")
    if "clinical_uncertain" in settings:
        lines.append(f"Clinical uncertain mentions counted as: {settings['clinical_uncertain']}")
    intervals = settings.get("intervals") or {}
    if intervals.get("description"):
        lines.append(intervals["description"][0].upper() + intervals["description"][1:])
    res = settings.get("resampling") or {}
    if res:
        by_key = ", ".join(f"{v} by {k}" for k, v in sorted((res.get("rows_by_key") or {}).items())
                           if res.get("unit") != "sample")
        lines.append(f"Resampling unit: {res.get('unit')} ({res.get('clusters')} clusters over {res.get('rows')} rows"
                     + (f"; rows keyed {by_key}" if by_key else "") + ")")
    return lines


def fmt_p(p) -> str:
    """A p-value: 4 decimals, or '<0.001' (a bootstrap p of 0 only says p < 1/resamples)."""
    return "—" if p is None else "<0.001" if p < 0.001 else f"{p:.4f}"


def _table_md(metrics: dict) -> list[str]:
    lines = ["| section | metric | value | CI | interval | n |", "|---|---|---|---|---|---|"]
    for section in SECTIONS:
        for name, e in (metrics.get(section) or {}).items():
            if e.get("unavailable"):
                lines.append(f"| {section} | {name} | unavailable | {e['unavailable']} | | {e.get('n', '')} |")
                continue
            std = f" ± {e['std']:.4f}" if "std" in e else ""
            lines.append(f"| {section} | {name} | {_f(e.get('value'))}{std} | [{_f(e.get('ci_low'))}, "
                         f"{_f(e.get('ci_high'))}] | {e.get('interval', '')} | {e.get('n', '')} |")
    return lines


def _compare_md(comp: dict) -> list[str]:
    def files(x):  # one path, or the seeds of one side
        return ", ".join(f"`{p}`" for p in ([x] if isinstance(x, str) else x))

    lines = [f"A = {files(comp['a'])}, B = {files(comp['b'])}, alpha = {comp['alpha']}, resampling unit = "
             f"{comp.get('resample_unit', 'sample')}", "",
             f"Verdicts: {comp.get('tests', '')}.", "",
             "| section | metric | A | B | A − B | CI (bootstrap) | p | test | verdict | n |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for section, entries in comp["sections"].items():
        for name, e in entries.items():
            lines.append(f"| {section} | {name} | {_f(e.get('a'))} | {_f(e.get('b'))} | {_f(e.get('value'))} | "
                         f"[{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}] | {fmt_p(e.get('p_value'))} | "
                         f"{e.get('test') or '—'} | {e.get('verdict') or 'no verdict'} | {e.get('n', '')} |")
            if e.get("note"):
                notes.append(f"- {section}/{name}: {e['note']}")
    return lines + ([""] + notes if notes else [])


def _outputs_md(metrics: dict) -> list[str]:
    lines = []
    for check in metrics.get("outputs", []):
        if check.get("flags"):
            side = f" ({check['side'].upper()})" if check.get("side") else ""
            lines.append(f"- **{check['path']}**{side}: {'; '.join(check['flags'])}")
    return lines


def _range(section: str, name: str) -> tuple[float, float]:
    return RANGES.get(name, RANGES.get(f"{section}/{name}", (0.0, 1.0)))


def _plots(metrics: dict) -> list[tuple[str, str]]:
    plots = []
    comp = metrics.get("compare")
    b_metrics = (comp or {}).get("b_metrics") or {}

    def items_for(section: str, names: list[str]) -> list:
        out = []
        for name in names:
            e = (metrics.get(section) or {}).get(name) or {}
            if not comp:
                out.append((name, e.get("value"), e.get("ci_low"), e.get("ci_high")))
                continue
            # a comparison charts both sides, A then B, on the same axis
            eb = b_metrics.get(section, {}).get(name) or {}
            out.append((f"{name} · A", e.get("value"), e.get("ci_low"), e.get("ci_high")))
            out.append((f"{name} · B", eb.get("value"), eb.get("ci_low"), eb.get("ci_high")))
        return out

    sides = " (A and B)" if comp else ""
    vqa = metrics.get("vqa") or {}
    if vqa:
        plots.append((f"VQA accuracy by group{sides} (bars: accuracy, whiskers: interval)",
                      _interval_svg(items_for("vqa", list(vqa)), title="VQA accuracy")))
    judge = metrics.get("judge") or {}
    for name, e in judge.items():
        dist = e.get("distribution")
        if dist:
            total = sum(dist.values()) or 1
            items = [(f"score {k}", v / total, None, None) for k, v in dist.items()]
            plots.append((f"Judge score distribution: {name} (share of replies)", _interval_svg(items, title=name)))
    for section in ("report", "clinical", "semantic"):
        entries = metrics.get(section) or {}
        # one plot per value range, so CIDEr-D (0..10) is not drawn on a [0, 1] axis
        by_range: dict[tuple[float, float], list[str]] = {}
        for name, e in entries.items():
            if e.get("value") is not None:
                by_range.setdefault(_range(section, name), []).append(name)
        for (lo, hi), names in by_range.items():
            items = items_for(section, names)
            top = max([v for _, *vals in items for v in vals if v is not None] + [lo])
            # CIDEr-D rarely exceeds 2: show the data's span, and say where the axis stops
            shown_hi = hi if hi <= 1 else min(hi, max(1.0, math.ceil(top * 1.1)))
            label = f"{section} metrics{sides} in [{lo:g}, {hi:g}]" + (f" (axis cut at {shown_hi:g})" if shown_hi < hi else "")
            plots.append((label, _interval_svg(items, lo=lo, hi=shown_hi, title=section)))
    if comp:
        items = [(f"{s}/{n}", e.get("value"), e.get("ci_low"), e.get("ci_high"))
                 for s, entries in comp["sections"].items() for n, e in entries.items() if e.get("value") is not None]
        if items:
            bound = max([abs(v) for _, *vals in items for v in vals if v is not None] + [1e-6])
            plots.append(("Forest plot: A − B with interval (right of the line favours A)",
                          _interval_svg(items, lo=-bound, hi=bound, zero=0.0, title="forest plot")))
    return plots


def write_report(metrics: dict, folder: Path) -> tuple[Path, Path]:
    """Write report.md and report.html into `folder`; return their paths."""
    folder = Path(folder)
    settings = metrics.get("settings", {})
    md = ["# pefomed score report", ""]
    md += [f"- {line}" for line in settings_lines(settings)] + [""]
    if "runs" in metrics:
        md += [f"Mean ± std across {len(metrics['runs'])} runs; interval: t interval of the mean across runs.", ""]
    outputs = _outputs_md(metrics)
    if outputs:
        md += ["## Degenerate outputs", "", "Empty, punctuation-only or all-identical predictions "
               "(a difference may come from these alone):", ""] + outputs + [""]
    md += ["## Metrics", ""] + _table_md(metrics) + [""]
    if metrics.get("compare"):
        md += ["## Paired comparison", ""] + _compare_md(metrics["compare"]) + [""]
    plots = _plots(metrics)
    md_path, html_path = folder / "report.md", folder / "report.html"
    with atomic_write(md_path) as fh:
        fh.write("\n".join(md + ["Plots are in report.html."]) + "\n")
    body = ["<h1>pefomed score report</h1>", "<ul>"]
    body += [f"<li>{html.escape(line)}</li>" for line in settings_lines(settings)]
    body.append("</ul>")
    if outputs:
        body += ["<h2>Degenerate outputs</h2>", "<ul>"]
        body += [f"<li>{html.escape(line[2:].replace('**', ''))}</li>" for line in outputs]
        body.append("</ul>")

    def md_table_to_html(lines: list[str]) -> str:
        rows = [line.strip("|").split("|") for line in lines if line.startswith("|") and not line.startswith("|---")]
        if not rows:
            return ""
        head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in rows[1:])
        return f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>"

    body += ["<h2>Metrics</h2>", md_table_to_html(_table_md(metrics))]
    if metrics.get("compare"):
        comp_md = _compare_md(metrics["compare"])
        body += ["<h2>Paired comparison</h2>", f"<p>{html.escape(comp_md[0])}</p>", f"<p>{html.escape(comp_md[2])}</p>",
                 md_table_to_html(comp_md)]
        body += [f"<p>{html.escape(line[2:])}</p>" for line in comp_md if line.startswith("- ")]
    for title, svg in plots:
        body += [f"<h2>{html.escape(title)}</h2>", svg]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>pefomed score report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    with atomic_write(html_path) as fh:
        fh.write(page)
    return md_path, html_path
