"""`pefomed score PRED.jsonl [...] [--compare B.jsonl] --out METRICS.json`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

EXAMPLE = """
Examples:

  pefomed score runs/a/PRED.jsonl --out runs/a/METRICS.json

  pefomed score runs/a/PRED.jsonl --compare runs/b/PRED.jsonl --out cmp/METRICS.json

  pefomed score seed0/PRED.jsonl seed1/PRED.jsonl seed2/PRED.jsonl --out seeds/METRICS.json
"""


def register(app: typer.Typer) -> None:
    @app.command(help="Score predictions: VQA accuracy, BLEU/METEOR/ROUGE-L/CIDEr, clinical efficacy, "
                      "semantic similarity, LLM judge; every number with a bootstrap interval." + EXAMPLE)
    def score(
        predictions: List[Path] = typer.Argument(..., help="PRED.jsonl file(s); several = seeds of one setting (mean ± std)."),
        compare: Optional[Path] = typer.Option(None, "--compare", help="Paired comparison against this PRED.jsonl (same ids)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="METRICS.json to write."),
        report: Optional[Path] = typer.Option(None, "--report", help="Folder for report.md + report.html (default: OUT's folder/report)."),
        task: Optional[str] = typer.Option(None, "--task", help="Force vqa or report metrics; rows of the other task are an error."),
        vqa_convention: str = typer.Option("exact", "--vqa-convention", help="exact (PeFoMed) or llava-med."),
        tokenizer: str = typer.Option("ptb", "--tokenizer", help="Report metrics tokenization: ptb (pycocoevalcap's) or whitespace."),
        meteor: bool = typer.Option(True, "--meteor/--no-meteor", help="METEOR 1.5 via pycocoevalcap's jar (needs Java)."),
        clinical: bool = typer.Option(True, "--clinical/--no-clinical", help="CheXpert-style clinical efficacy on reports."),
        uncertain: str = typer.Option("positive", "--uncertain", help="Clinical: uncertain mentions count as positive, negative or ignore."),
        semantic: bool = typer.Option(False, "--semantic", help="Sentence-embedding cosine similarity (extra 'semantic')."),
        judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for the LLM judge."),
        judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Judge model name at --judge-url."),
        judge_key_env: Optional[str] = typer.Option(None, "--judge-key-env", help="Env var holding the judge API key, e.g. OPENAI_API_KEY."),
        judge_local: Optional[str] = typer.Option(None, "--judge-local", help="Local transformers causal LM folder as judge."),
        judge_cache: Optional[str] = typer.Option(None, "--judge-cache", help="Judge reply cache folder (default ~/.cache/pefomed/judge)."),
        bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples (0 = no intervals)."),
        seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
        alpha: float = typer.Option(0.05, "--alpha", help="Significance level for intervals and verdicts."),
    ):
        from pefomed.score.run import print_metrics, score_files

        metrics = score_files(predictions, compare=compare, out=out, report=report, task=task,
                              vqa_convention=vqa_convention, tokenizer=tokenizer, meteor=meteor, clinical=clinical,
                              uncertain=uncertain, semantic=semantic, judge_url=judge_url, judge_model=judge_model,
                              judge_key_env=judge_key_env, judge_local=judge_local, judge_cache=judge_cache,
                              bootstrap=bootstrap, seed=seed, alpha=alpha, progress=True)
        print_metrics(metrics)
        if out is not None:
            from pefomed.console import console

            console.print(f"wrote {out}")
