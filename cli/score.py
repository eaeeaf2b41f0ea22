"""`pefomed score PRED.jsonl [...] [--compare B.jsonl ...] --out METRICS.json`.

Argument parsing only. The scoring options are declared once, as the fields of
pefomed.score.run.ScoreOptions (default, help, allowed values); each field becomes one option here
(`vqa_convention` -> `--vqa-convention`, booleans as `--x/--no-x`), and ScoreOptions validates
the values, so the library and the command line cannot drift apart.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Examples:

  pefomed score runs/a/PRED.jsonl --out runs/a/METRICS.json

  pefomed score runs/a/PRED.jsonl --compare runs/b/PRED.jsonl --out cmp/METRICS.json

  pefomed score seed0/PRED.jsonl seed1/PRED.jsonl seed2/PRED.jsonl --out seeds/METRICS.json

  pefomed score a/s0.jsonl a/s1.jsonl --compare b/s0.jsonl --compare b/s1.jsonl --out cmp/METRICS.json
"""


def _option_parameters() -> list[inspect.Parameter]:
    """One keyword parameter with a typer.Option per command-line field of ScoreOptions."""
    from pefomed.score.run import ScoreOptions

    hints = typing.get_type_hints(ScoreOptions)
    params = []
    for f in fields(ScoreOptions):
        if not f.metadata.get("cli", True):
            continue
        kind = hints[f.name]
        optional = type(None) in typing.get_args(kind)
        base = next(t for t in (typing.get_args(kind) or (kind,)) if t is not type(None))
        flag = ScoreOptions.flag(f.name)
        decl = f"{flag}/--no-{flag[2:]}" if base is bool else flag
        default = f.default if f.default is not MISSING else None
        choices = f.metadata.get("choices")
        # choices given as a function are the scorers' own list: the help text names them
        help_text = f.metadata["help"] + (f" (one of: {', '.join(choices)})" if isinstance(choices, tuple) else "")
        params.append(inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[base] if optional else base,
            default=typer.Option(default, decl, help=help_text, show_default=default is not None)))
    return params


def register(app: typer.Typer) -> None:
    def score(predictions: List[Path], compare: Optional[List[Path]], out: Optional[Path],
              report: Optional[Path], **options):
        from pefomed.score.run import print_metrics, score_files

        metrics = score_files(predictions, compare=compare or None, out=out, report=report, progress=True, **options)
        print_metrics(metrics, out=out, report=report, cli=True)

    files = [
        inspect.Parameter("predictions", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=List[Path],
                          default=typer.Argument(..., help="PRED.jsonl file(s); several = seeds of one setting "
                                                               "(mean ± std), or of side A with --compare.")),
        inspect.Parameter("compare", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[List[Path]],
                          default=typer.Option(None, "--compare", help="Paired comparison against this PRED.jsonl "
                                               "(same ids); repeat it for several seeds of side B.")),
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--out", "-o", help="METRICS.json to write (without it nothing "
                                               "is written, and the command says so).")),
        inspect.Parameter("report", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                          default=typer.Option(None, "--report", help="Folder for report.md + report.html "
                                               "(default: OUT's folder/report).")),
    ]
    params = files + _option_parameters()
    # Typer reads the command's parameters from its signature: give it the declared ones.
    score.__signature__ = inspect.Signature(params)
    score.__annotations__ = {p.name: p.annotation for p in params}
    app.command(name="score", help="Score predictions: VQA accuracy, BLEU/METEOR/ROUGE-L/CIDEr, clinical efficacy, "
                                   "semantic similarity, LLM judge; every number with an interval, comparisons "
                                   "with the name of the test behind each verdict." + EXAMPLE)(score)
