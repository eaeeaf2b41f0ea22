"""A self-contained report a person opens: report.md and report.html (one file, inline SVG plots).

Plots are hand-made SVG rather than matplotlib: they are a handful of bars and intervals, and this
keeps the scoring path free of a plotting dependency.
"""

from __future__ import annotations

import html
from pathlib import Path

from pefomed.io import atomic_write

SECTIONS = ("vqa", "report", "clinical", "semantic", "judge")


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


def _table_md(metrics: dict) -> list[str]:
    lines = ["| section | metric | value | CI | n |", "|---|---|---|---|---|"]
    for section in SECTIONS:
        for name, e in (metrics.get(section) or {}).items():
            if e.get("unavailable"):
                lines.append(f"| {section} | {name} | unavailable | {e['unavailable']} | {e.get('n', '')} |")
                continue
            std = f" ± {e['std']:.4f}" if "std" in e else ""
            lines.append(f"| {section} | {name} | {_f(e.get('value'))}{std} | [{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}] | {e.get('n', '')} |")
    return lines


def _compare_md(comp: dict) -> list[str]:
    lines = [f"A = `{comp['a']}`, B = `{comp['b']}`, alpha = {comp['alpha']}", "",
             "| section | metric | A | B | A − B | CI | p | verdict |", "|---|---|---|---|---|---|---|---|"]
    for section, entries in comp["sections"].items():
        for name, e in entries.items():
            p = e.get("mcnemar", {}).get("p_value", e.get("p_value"))
            lines.append(f"| {section} | {name} | {_f(e.get('a'))} | {_f(e.get('b'))} | {_f(e.get('value'))} | "
                         f"[{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}] | {_f(p)} | {e['verdict']} |")
    return lines


def _plots(metrics: dict) -> list[tuple[str, str]]:
    plots = []
    vqa = metrics.get("vqa") or {}
    if vqa:
        items = [(k, e.get("value"), e.get("ci_low"), e.get("ci_high")) for k, e in vqa.items()]
        plots.append(("VQA accuracy by group (bars: accuracy, whiskers: interval)",
                      _interval_svg(items, title="VQA accuracy")))
    judge = metrics.get("judge") or {}
    for name, e in judge.items():
        dist = e.get("distribution")
        if dist:
            total = sum(dist.values()) or 1
            items = [(f"score {k}", v / total, None, None) for k, v in dist.items()]
            plots.append((f"Judge score distribution: {name} (share of replies)", _interval_svg(items, title=name)))
    for section in ("report", "clinical", "semantic"):
        entries = metrics.get(section) or {}
        items = [(k, e.get("value"), e.get("ci_low"), e.get("ci_high")) for k, e in entries.items()
                 if e.get("value") is not None and 0 <= e["value"] <= 1]
        if items:
            plots.append((f"{section} metrics in [0, 1]", _interval_svg(items, title=section)))
    comp = metrics.get("compare")
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
    md += [f"- VQA convention: {settings.get('convention', {}).get('vqa')}",
           f"- Normalization: {settings.get('normalization')}",
           f"- Tokenizer: {settings.get('tokenizer', {}).get('name')}",
           f"- Bootstrap: {settings.get('bootstrap')}",
           f"- Clinical uncertain mentions: {settings.get('clinical_uncertain')}", ""]
    if "runs" in metrics:
        md += [f"Mean ± std across {len(metrics['runs'])} runs; interval: t interval of the mean across runs.", ""]
    md += ["## Metrics", ""] + _table_md(metrics) + [""]
    if metrics.get("compare"):
        md += ["## Paired comparison", ""] + _compare_md(metrics["compare"]) + [""]
    plots = _plots(metrics)
    md_path, html_path = folder / "report.md", folder / "report.html"
    with atomic_write(md_path) as fh:
        fh.write("\n".join(md + ["Plots are in report.html."]) + "\n")
    body = ["<h1>pefomed score report</h1>", "<ul>"]
    body += [f"<li>{html.escape(line[2:])}</li>" for line in md[2:8] if line.startswith("- ")]
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
        body += ["<h2>Paired comparison</h2>", md_table_to_html(_compare_md(metrics["compare"]))]
    for title, svg in plots:
        body += [f"<h2>{html.escape(title)}</h2>", svg]
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>pefomed score report</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    with atomic_write(html_path) as fh:
        fh.write(page)
    return md_path, html_path
