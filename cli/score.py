"""`pefomed score PRED.jsonl [...] [--compare B.jsonl ...] --out METRICS.json`.

Argument parsing only: the options are declared once, in pefomed.options.score.ScoreCommand, and
cli/declared.py generates the flags from them.
"""

from __future__ import annotations

import typer

from pefomed.cli import declared

EXAMPLE = """
Examples:

  pefomed score runs/a/PRED.jsonl --out runs/a/METRICS.json

  pefomed score runs/a/PRED.jsonl --compare runs/b/PRED.jsonl --out cmp/METRICS.json

  pefomed score seed0/PRED.jsonl seed1/PRED.jsonl seed2/PRED.jsonl --out seeds/METRICS.json

  pefomed score a/s0.jsonl a/s1.jsonl --compare b/s0.jsonl --compare b/s1.jsonl --out cmp/METRICS.json
"""


def register(app: typer.Typer) -> None:
    from pefomed.options.score import ScoreCommand

    def score(command: ScoreCommand):
        from pefomed.score.run import score_files
        from pefomed.score.terminal import print_metrics

        settings = {**command.settings.flat(), "progress": True}
        metrics = score_files(command.predictions, compare=command.compare or None, out=command.out,
                              report=command.report, **settings)
        print_metrics(metrics, out=command.out, report=command.report, cli=True)

    declared.register(app, "score", ScoreCommand, score,
                      help="Score predictions: VQA accuracy, BLEU/METEOR/ROUGE-L/CIDEr, clinical efficacy, semantic "
                           "similarity, LLM judge; every number with an interval, comparisons with the name of the "
                           "test behind each verdict." + EXAMPLE)
