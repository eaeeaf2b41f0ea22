"""`pefomed score`'s terminal output: the metrics (and a comparison's verdicts) as Rich tables,
the degenerate-output warnings, the settings and what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pefomed.options import flag_of
from pefomed.score.report import SECTIONS
from pefomed.score.run import report_folder


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
