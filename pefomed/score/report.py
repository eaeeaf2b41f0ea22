"""A self-contained report a person opens: report.md and report.html (one file, inline SVG plots).

Plots are hand-made SVG rather than matplotlib: they are a handful of bars and intervals, and this
keeps the scoring path free of a plotting dependency.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

from pefomed.io import atomic_write
from pefomed.options import flag_of

SECTIONS = ("vqa", "report", "clinical", "chexbert", "radgraph", "bertscore", "ratescore", "green", "semantic",
            "judge")  # METRICS.json sections, in report order


def _f(x) -> str:
    return "—" if x is None else f"{x:.4f}"


def _interval_svg(items: list[tuple], *, lo: float = 0.0, hi: float = 1.0, zero: float | None = None,
                  title: str = "") -> str:
    """Horizontal bars (or points, for a forest plot) with interval whiskers. items: (label, value,
    low, high[, reference]); a reference (the majority-answer line) is drawn as a dashed tick."""
    row_h, label_w, plot_w = 22, 260, 380
    height = row_h * len(items) + 40
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return label_w + (min(max(v, lo), hi) - lo) / span * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 80}" height="{height}" '
             f'font-family="sans-serif" font-size="12" role="img"><title>{html.escape(title)}</title>']
    base = x(zero) if zero is not None else x(lo)
    parts.append(f'<line x1="{base:.1f}" y1="10" x2="{base:.1f}" y2="{height - 25}" stroke="#888"/>')
    overlay: list[str] = []
    for i, (label, value, low, high, *ref) in enumerate(items):
        y = 20 + i * row_h
        if ref and ref[0] is not None:  # drawn after every bar, so no bar hides it
            overlay.append(f'<line class="reference" x1="{x(ref[0]):.1f}" y1="{y - 10}" x2="{x(ref[0]):.1f}" '
                         f'y2="{y + 10}" stroke="#c0392b" stroke-width="2" stroke-dasharray="3,2"/>')
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
    parts += overlay
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


def _baseline_cell(baseline: dict | None, section: str, name: str) -> str:
    """'0.5000 ("yes")': what the majority answer scores on this row of the table."""
    b = ((baseline or {}).get("metrics") or {}).get(name) if section == "vqa" else None
    if not b:
        return ""
    if b.get("value") is None:
        return b.get("note") or "—"
    return f"{_f(b['value'])} (\u201c{b['answer']}\u201d)"


def _metric_rows(metrics: dict, baseline: dict | None = None) -> tuple[list[str], list[list[str]]]:
    """The metrics table as (header, rows of cell text), shared by report.md and report.html."""
    with_base = bool((baseline or {}).get("metrics"))
    head = ["section", "metric", "value", "CI", "interval", "n"] + (["majority answer"] if with_base else [])
    rows = []
    for section in SECTIONS:
        for name, e in (metrics.get(section) or {}).items():
            if e.get("unavailable"):
                row = [section, name, "unavailable", e["unavailable"], "", str(e.get("n", ""))]
            else:
                std = f" ± {e['std']:.4f}" if "std" in e else ""
                row = [section, name, f"{_f(e.get('value'))}{std}", f"[{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}]",
                       str(e.get("interval", "")), str(e.get("n", ""))]
            rows.append(row + ([_baseline_cell(baseline, section, name)] if with_base else []))
    return head, rows


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _table_md(metrics: dict, baseline: dict | None = None) -> list[str]:
    head, rows = _metric_rows(metrics, baseline)
    return (["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows])


def _compare_md(comp: dict) -> list[str]:
    def files(x):  # one path, or the seeds of one side
        return ", ".join(f"`{p}`" for p in ([x] if isinstance(x, str) else x))

    lines = [f"A = {files(comp['a'])}, B = {files(comp['b'])}, alpha = {comp['alpha']}, resampling unit = "
             f"{comp.get('resample_unit', 'sample')}", "",
             f"Verdicts: {comp.get('tests', '')}.", "",
             "| section | metric | A | B | A − B | CI (bootstrap) | p | test | verdict | n |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in _compare_rows(comp)]
    notes = [f"- {section}/{name}: {e['note']}" for section, entries in comp["sections"].items()
             for name, e in entries.items() if e.get("note")]
    return lines + ([""] + notes if notes else [])


COMPARE_HEAD = ["section", "metric", "A", "B", "A − B", "CI (bootstrap)", "p", "test", "verdict", "n"]


def _compare_rows(comp: dict) -> list[list[str]]:
    return [[section, name, _f(e.get("a")), _f(e.get("b")), _f(e.get("value")),
             f"[{_f(e.get('ci_low'))}, {_f(e.get('ci_high'))}]", fmt_p(e.get("p_value")), e.get("test") or "—",
             e.get("verdict") or "no verdict", str(e.get("n", ""))]
            for section, entries in comp["sections"].items() for name, e in entries.items()]


def _outputs_md(metrics: dict) -> list[str]:
    lines = []
    for check in metrics.get("outputs", []):
        if check.get("flags"):
            side = f" ({check['side'].upper()})" if check.get("side") else ""
            lines.append(f"- **{check['path']}**{side}: {'; '.join(check['flags'])}")
    return lines


def _range(section: str, name: str) -> tuple[float, float]:
    return RANGES.get(name, RANGES.get(f"{section}/{name}", (0.0, 1.0)))


def _baseline_value(baseline: dict | None, section: str, name: str) -> float | None:
    if section != "vqa" or not baseline:
        return None
    return ((baseline.get("metrics") or {}).get(name) or {}).get("value")


def _plots(metrics: dict, baseline: dict | None = None) -> list[tuple[str, str]]:
    plots = []
    comp = metrics.get("compare")
    b_metrics = (comp or {}).get("b_metrics") or {}

    def items_for(section: str, names: list[str]) -> list:
        out = []
        for name in names:
            e = (metrics.get(section) or {}).get(name) or {}
            ref = _baseline_value(baseline, section, name)
            if not comp:
                out.append((name, e.get("value"), e.get("ci_low"), e.get("ci_high"), ref))
                continue
            # a comparison charts both sides, A then B, on the same axis
            eb = b_metrics.get(section, {}).get(name) or {}
            out.append((f"{name} · A", e.get("value"), e.get("ci_low"), e.get("ci_high"), ref))
            out.append((f"{name} · B", eb.get("value"), eb.get("ci_low"), eb.get("ci_high"), ref))
        return out

    sides = " (A and B)" if comp else ""
    vqa = metrics.get("vqa") or {}
    if vqa:
        dashed = ", dashed red tick: majority answer" if (baseline or {}).get("metrics") else ""
        plots.append((f"VQA accuracy by group{sides} (bars: accuracy, whiskers: interval{dashed})",
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


# ---------------------------------------------------------------- HTML building blocks

def _e(value) -> str:
    """Every user string goes through here: questions, answers, paths, ids, prompts."""
    return html.escape(str(value), quote=True)


LIST_SHOWN = 20  # longer lists of plain values are cut, with the count of the rest


# A string of whitespace only (a stop string "\n", a separator " ") would render as nothing.
_VISIBLE = str.maketrans({"\n": "⏎", "\t": "⇥", " ": "␣", "\r": "␍"})


def _visible(text: str) -> str:
    return text.translate(_VISIBLE) if text and not text.strip() else text


def _scalar_html(value) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    text = _visible(str(value))
    return f'<span class="text">{_e(text)}</span>' if "\n" in text else _e(text)


def _html_value(value) -> str:
    """A JSON-like value as HTML: objects as definition lists, lists of objects as tables, lists of
    plain values inline (never a Python repr)."""
    if isinstance(value, dict):
        if not value:
            return '<span class="muted">none</span>'
        return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_html_value(v)}</dd>" for k, v in value.items()) + "</dl>"
    if isinstance(value, (list, tuple)):
        if not value:
            return '<span class="muted">none</span>'
        if all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            head = "".join(f"<th>{_e(k)}</th>" for k in keys)
            body = "".join("<tr>" + "".join(f"<td>{_html_value(v.get(k))}</td>" for k in keys) + "</tr>" for v in value)
            return f'<table class="left"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        if all(not isinstance(v, (dict, list, tuple)) for v in value):
            shown = ", ".join(_scalar_html(v) for v in value[:LIST_SHOWN])
            return shown + (f" … and {len(value) - LIST_SHOWN} more" if len(value) > LIST_SHOWN else "")
        return "<ul>" + "".join(f"<li>{_html_value(v)}</li>" for v in value) + "</ul>"
    return _scalar_html(value)


def _md_value(value, indent: int = 0) -> list[str]:
    """The same value as nested Markdown bullets."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, (dict, list, tuple)) and v and not all(not isinstance(x, (dict, list, tuple)) for x in v):
                lines += [f"{pad}- {k}:"] + _md_value(v, indent + 1)
            else:
                lines.append(f"{pad}- {k}: {_md_inline(v)}")
        return lines
    if isinstance(value, (list, tuple)):
        lines = []
        for i, v in enumerate(value, 1):
            lines += [f"{pad}- {i}:"] + _md_value(v, indent + 1) if isinstance(v, (dict, list, tuple)) \
                else [f"{pad}- {_md_inline(v)}"]
        return lines
    return [f"{pad}- {_md_inline(value)}"]


def _md_inline(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_md_inline(v)}" for k, v in value.items()) or "none"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_md_inline(v) for v in value[:LIST_SHOWN])
        return (shown + (f" ... and {len(value) - LIST_SHOWN} more" if len(value) > LIST_SHOWN else "")) or "none"
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    text = _visible(str(value))
    return " ⏎ ".join(text.splitlines()) if "\n" in text else text


def _table_html(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{_e(c)}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>'


def _provenance_html(prov: dict) -> list[str]:
    body = ['<section id="provenance"><h2>Provenance</h2>',
            _html_value({"scored at (UTC)": prov.get("date"), "pefomed": prov.get("pefomed")})]
    for f in prov.get("files", []):
        side = f" ({f['side']})" if f.get("side") else ""
        rest = {k: v for k, v in f.items() if k not in ("file", "side")}
        body += [f"<h3>Predictions{_e(side)}: <code>{_e(f['file'])}</code></h3>", _html_value(rest)]
    body.append("</section>")
    return body


def _baseline_html(baseline: dict) -> list[str]:
    if not baseline:
        return []
    out = [f"<p><strong>Majority-answer reference</strong> ({_e(baseline.get('source'))}, "
           f"scored under the {_e(baseline.get('convention'))} convention): {_e(baseline.get('description'))}.</p>"]
    if baseline.get("note"):
        out.append(f'<p class="note">Training answers unavailable: {_e(baseline["note"])}</p>')
    return out


def _card_html(card: dict) -> str:
    cls = "card right" if card.get("correct") else "card wrong"
    if card.get("thumbnail"):
        img = f'<img src="{_e(card["thumbnail"])}" alt="{_e(card.get("image") or "")}">'
    else:
        img = f'<div class="noimg">{_e(card.get("image_note") or "no image")}</div>'
    verdict = "right" if card.get("correct") else "wrong"
    if card.get("score") is not None and card["score"] not in (0.0, 1.0):
        verdict += f" (score {card['score']:.2f})"
    fields = [("id", card.get("id")), ("line", card.get("line")), ("image", card.get("image"))]
    if card.get("question"):
        fields.append(("question", card["question"]))
    fields += [("reference", card.get("reference")), ("prediction", card.get("prediction"))]
    # an empty answer is a finding in itself: say so rather than show nothing
    dl = "".join(f"<dt>{_e(k)}</dt><dd>" + ('<span class="muted">(empty)</span>' if v == "" else _scalar_html(v))
                 + "</dd>" for k, v in fields)
    disagree = ""
    if card.get("disagree") is not None:
        disagree = (_table_html(["finding", "reference", "prediction"],
                                [[d["finding"], d["reference"], d["prediction"]] for d in card["disagree"]], "left")
                    if card["disagree"] else '<p class="muted">labels agree on every finding</p>')
    return (f'<figure class="{cls}">{img}<figcaption><p class="verdict">{_e(verdict)}</p><dl>{dl}</dl>'
            f"{disagree}</figcaption></figure>")


def _errors_html(errors: dict) -> list[str]:
    if not errors:
        return []
    body = ['<section id="error-analysis"><h2>Error analysis</h2>']
    sections = errors.get("sections") or []
    body.append(f"<p>Rows of <code>{_e(errors.get('file'))}</code>, sampled per group with Python's "
                f"<code>random.Random</code> seeded by the text “{_e(errors.get('seed'))}/&lt;grouping&gt;/&lt;group&gt;” "
                f"(seed {_e(errors.get('seed'))}, the bootstrap seed): up to {_e(errors.get('wrong'))} wrong and "
                f"{_e(errors.get('right'))} right rows per group. Images are resolved against {_e(errors.get('image_root_from'))}: "
                f"<code>{_e(errors.get('image_root'))}</code>.</p>")
    if errors.get("reports_without_clinical"):
        body.append('<p class="note">Reports get no error analysis: it groups them by finding, and clinical labelling is off '
                    f"({flag_of('score', 'clinical', negated=True)}).</p>")
    if not sections:
        body.append('<p class="muted">Nothing to show.</p>')
    for sec in sections:
        if sec["task"] == "vqa":
            what = ("per question type" if sec["by"] == "question_type" else "per answer type (no question_type in meta)")
            body.append(f"<h3>VQA, {_e(what)}</h3><p>Right means full credit under the {_e(sec['convention'])} "
                        "convention.</p>")
            if sec.get("groups_total", 0) > len(sec["groups"]):
                body.append(f'<p class="note">The {len(sec["groups"])} largest of {sec["groups_total"]} groups.</p>')
        else:
            body.append(f"<h3>Reports, per finding</h3><p>Wrong: the reference and the prediction disagree on the "
                        f"finding (uncertain counted as {_e(sec['uncertain'])}); right: both positive. Each card lists "
                        "every finding whose labels disagree.</p>")
            if sec.get("scanned", 0) < sec.get("total", 0):
                body.append(f'<p class="note">Counts and samples among a seeded random {sec["scanned"]:,} of the '
                            f'{sec["total"]:,} reports (seed text “{_e(errors.get("seed"))}/scan”).</p>')
        for g in sec["groups"]:
            body.append(f'<h4>{_e(g["group"])} <span class="muted">({g["n"]} rows: {g["wrong"]} wrong, '
                        f'{g["right"]} right)</span></h4><div class="cards">'
                        + "".join(_card_html(c) for c in g["cards"]) + "</div>")
    body.append("</section>")
    return body


# No network: the browser may load nothing but what is inside the file (data: images, inline CSS).
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
       "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
       "td:nth-child(-n+2),th:nth-child(-n+2),table.left td,table.left th{text-align:left}dl{display:grid;grid-template-columns:max-content auto;"
       "gap:2px 12px;margin:.3em 0}dt{font-weight:bold;color:#444}dd{margin:0}.muted{color:#888}"
       ".note{color:#8a5a00}.text{white-space:pre-wrap}code{background:#f4f4f4;padding:0 3px}"
       ".cards{display:flex;flex-wrap:wrap;gap:10px}.card{margin:0;border:2px solid #ccc;border-radius:4px;"
       "padding:6px;width:330px;font-size:13px;overflow-wrap:anywhere}.card.wrong{border-color:#d9534f}"
       ".card.right{border-color:#5cb85c}.card img{max-width:160px;max-height:160px;display:block}"
       ".noimg{width:160px;height:80px;background:#eee;color:#666;font-size:11px;padding:4px;overflow:hidden}"
       ".verdict{font-weight:bold;margin:.2em 0}")


def write_report(metrics: dict, folder: Path, extras: dict | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html into `folder`; return their paths. `extras`
    (pefomed.score.error_analysis.report_extras): provenance, the majority-answer reference and
    the error analysis; without it the report has the numbers only."""
    folder = Path(folder)
    extras = extras or {}
    settings = metrics.get("settings", {})
    baseline = extras.get("baseline") or {}
    md = ["# pefomed score report", ""]
    md += [f"- {line}" for line in settings_lines(settings)] + [""]
    if "runs" in metrics:
        md += [f"Mean ± std across {len(metrics['runs'])} runs; interval: t interval of the mean across runs.", ""]
    outputs = _outputs_md(metrics)
    if outputs:
        md += ["## Degenerate outputs", "", "Empty, punctuation-only or all-identical predictions "
               "(a difference may come from these alone):", ""] + outputs + [""]
    md += ["## Metrics", ""] + _table_md(metrics, baseline) + [""]
    if baseline:
        md += [f"Majority answer ({baseline.get('source')}): {baseline.get('description')}."]
        md += [f"Training answers unavailable: {baseline['note']}"] if baseline.get("note") else []
        md.append("")
    if metrics.get("compare"):
        md += ["## Paired comparison", ""] + _compare_md(metrics["compare"]) + [""]
    if extras.get("provenance"):
        prov = extras["provenance"]
        md += ["## Provenance", ""] + _md_value({"scored at (UTC)": prov.get("date"), "pefomed": prov.get("pefomed")})
        for f in prov.get("files", []):
            md += ["", f"Predictions{' (' + f['side'] + ')' if f.get('side') else ''}: `{f['file']}`", ""]
            md += _md_value({k: v for k, v in f.items() if k not in ("file", "side")})
        md += ["", "Scoring options:", ""] + _md_value(prov.get("options") or {}) + [""]
    plots = _plots(metrics, baseline)
    md_path, html_path = folder / "report.md", folder / "report.html"
    with atomic_write(md_path) as fh:
        tail = "Plots" + (" and the error analysis (sampled rows with their images)" if extras.get("errors") else "")
        fh.write("\n".join(md + [f"{tail} are in report.html."]) + "\n")

    body = ["<h1>pefomed score report</h1>"]
    if extras.get("provenance"):
        body += _provenance_html(extras["provenance"])
    if outputs:
        body += ['<section id="degenerate"><h2>Degenerate outputs</h2><ul>']
        body += [f"<li>{_e(line[2:].replace('**', ''))}</li>" for line in outputs]
        body.append("</ul></section>")
    head, rows = _metric_rows(metrics, baseline)
    body += ['<section id="metrics"><h2>Metrics</h2>']
    if "runs" in metrics:
        body.append(f"<p>Mean ± std across {len(metrics['runs'])} runs; interval: t interval of the mean across runs.</p>")
    body += [_table_html(head, rows)] + _baseline_html(baseline) + ["</section>"]
    if metrics.get("compare"):
        comp_md = _compare_md(metrics["compare"])
        comp = metrics["compare"]
        a, b = ([comp[k]] if isinstance(comp[k], str) else comp[k] for k in ("a", "b"))
        body += ['<section id="compare"><h2>Paired comparison</h2>',
                 _html_value({"A": a, "B": b, "alpha": comp.get("alpha"), "resampling unit": comp.get("resample_unit", "sample"),
                              "verdicts": comp.get("tests", "")})]
        body.append(_table_html(COMPARE_HEAD, _compare_rows(comp)))
        body += [f"<p>{_e(line[2:])}</p>" for line in comp_md if line.startswith("- ")]
        body.append("</section>")
    if plots:
        body.append('<section id="plots"><h2>Plots</h2>')
        for title, svg in plots:
            body += [f"<h3>{_e(title)}</h3>", svg]
        body.append("</section>")
    body += _errors_html(extras.get("errors") or {})
    body += ['<section id="scoring"><h2>How the numbers were computed</h2><ul>']
    body += [f"<li>{_e(line)}</li>" for line in settings_lines(settings)]
    body.append("</ul>")
    options = (extras.get("provenance") or {}).get("options") or {}
    if options:
        body += ["<h3>Scoring options</h3>",
                 _table_html(["option", "value"], [[k, _md_inline(v)] for k, v in options.items()], "left")]
    body += ["<details><summary>Every scoring setting (METRICS.json <code>settings</code>)</summary>",
             _html_value(settings), "</details></section>"]
    page = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            "<title>pefomed score report</title><style>" + CSS + "</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    with atomic_write(html_path) as fh:
        fh.write(page)
    return md_path, html_path
