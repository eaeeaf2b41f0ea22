"""`pefomed score`'s options, declared once (pefomed.options.declare): the scoring settings
(ScoreOptions, which score_files, the study report and a study file's `score:` section take) and the
command (ScoreCommand: the files, plus the settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pefomed.options.declare import Options, nested, option

RESAMPLE_UNITS = ("sample", "image", "study", "patient")
MAX_BOOTSTRAP = 1_000_000
PROPORTION_INTERVALS = ("wilson", "clopper-pearson", "bootstrap")


def _vqa_conventions() -> tuple[str, ...]:
    # resolved when validating, so that declaring the CLI does not import the scorers (and numpy)
    from pefomed.metrics.vqa import CONVENTIONS

    return tuple(CONVENTIONS)


_NON_EMPTY = (lambda v: bool(str(v).strip()), "a non-empty text")


@dataclass(kw_only=True)
class ScoreOptions(Options):
    """The scoring settings (everything but the files): what score_files and the study report take."""

    task: str | None = option(None, "Force vqa or report metrics; rows of the other task are an error.",
                               choices=("vqa", "report"))
    vqa_convention: str = option("exact", "VQA accuracy convention: exact (pefomed's), pefomed-paper (the paper's released scorer), llava-med or "
                                  "llava-med-run-eval (LLaVA-Med's scripts); see docs/metrics.md.",
                                  choices=_vqa_conventions)
    tokenizer: str = option("ptb", "Report metrics tokenization: ptb (pycocoevalcap's) or whitespace.",
                             choices=("ptb", "whitespace"))
    meteor: bool = option(True, "METEOR 1.5 via pycocoevalcap's jar (needs Java).")
    clinical: bool = option(True, "CheXpert-style clinical efficacy on reports.")
    uncertain: str = option("negative", "Clinical: uncertain mentions count as negative (default, R2Gen's "
                             "protocol), positive, or are ignored.", choices=("negative", "positive", "ignore"))
    semantic: bool = option(False, "Sentence-embedding cosine similarity (extra 'semantic').")
    # model-based report metrics (extra 'radeval', pefomed.score.report_models): local weights only
    # unless report_models_online; the rule-based `clinical` labeler stays the offline default
    chexbert: bool = option(False, "F1-CheXbert (extra 'radeval'): CheXbert labels of both reports; P/R/F1 "
                             "micro, macro, weighted and samples over 14 and 5 classes, per class, 5-class "
                             "accuracy. Needs chexbert.pth and bert-base-uncased locally.")
    radgraph: str | None = option(None, "RadGraph F1 (extra 'radeval') with this RadGraph model: simple, partial "
                                   "and complete reward levels. Needs its extracted model folder locally.",
                                   choices=("radgraph", "radgraph-xl", "modern-radgraph-xl", "echograph"))
    bertscore: str | None = option(None, "BERTScore (extra 'radeval') with this model: a local folder or a "
                                    "hub id in the local Hugging Face cache (RadEval's default: distilbert-base-uncased).",
                                    check=_NON_EMPTY)
    bertscore_layers: int | None = option(None, "BERTScore: the hidden layer compared (default: 5 for "
                                           "distilbert-base-uncased; needed for any other model).",
                                           check=(lambda v: v >= 1, ">= 1"))
    ratescore: bool = option(False, "RaTEScore (extra 'radeval'): entity-aware similarity of the two reports "
                             "(medspacy, a NER model and an entity embedder). Needs both models locally.")
    ratescore_ner_model: str = option("Angelakeke/RaTE-NER-Deberta", "RaTEScore: its NER model, a local folder "
                                      "or a hub id in the local Hugging Face cache.", check=_NON_EMPTY)
    ratescore_embedding_model: str = option("FremyCompany/BioLORD-2023-C", "RaTEScore: its entity embedding "
                                            "model, a local folder or a hub id in the local Hugging Face cache.",
                                            check=_NON_EMPTY)
    green: str | None = option(None, "GREEN (extra 'radeval') with this LLM judge: a local folder or a hub id in "
                               "the local Hugging Face cache (RadEval's default: StanfordAIMI/GREEN-radllama2-7b).",
                               check=_NON_EMPTY)
    green_batch_size: int = option(8, "GREEN: report pairs per generation batch (RadEval's default 8).",
                                   check=(lambda v: v >= 1, ">= 1"))
    green_max_length: int = option(2048, "GREEN: tokens of prompt plus generated analysis (RadEval's default "
                                   "2048; must exceed the prompt, which holds both reports).", check=(lambda v: v >= 2, ">= 2"))
    report_models_dir: str | None = option(None, "Folder holding chexbert.pth and the RadGraph model folders "
                                            "(default: f1chexbert's and radgraph's own caches).", check=_NON_EMPTY)
    report_models_online: bool = option(False, "Let F1-CheXbert, RadGraph, BERTScore, RaTEScore and GREEN download missing "
                                         "weights from the Hugging Face hub (default: never; local files only).")
    # the judge's texts: given, each is non-empty (an empty --judge-url would switch the judge off
    # without a word; an empty --judge-cache would cache in the current folder)
    judge_url: str | None = option(None, "OpenAI-compatible base URL for the LLM judge.", check=_NON_EMPTY)
    judge_model: str | None = option(None, "Judge model name at `judge_url`.", check=_NON_EMPTY)
    judge_key_env: str | None = option(None, "Env var holding the judge API key, e.g. OPENAI_API_KEY.",
                                        check=_NON_EMPTY)
    judge_local: str | None = option(None, "Local transformers causal LM folder as judge.", check=_NON_EMPTY)
    judge_cache: str | None = option(None, "Judge reply cache folder (default ~/.cache/pefomed/judge).",
                                      check=_NON_EMPTY)
    judge_protocol: str = option("pefomed", "Judge prompts: pefomed (ours) or pefomed-paper (PeFoMed's released "
                                  "gpt_eval prompts, verbatim).", choices=("pefomed", "pefomed-paper"))
    # at most MAX_BOOTSTRAP: the resamples are held as index arrays (10^6 x the rows is already
    # gigabytes for a test set of a few hundred), and past 10^4 the interval's Monte Carlo error is
    # far below the sampling error it estimates
    bootstrap: int = option(1000, "Bootstrap resamples (0 = no bootstrap: accuracies keep their proportion "
                             "interval, comparisons get a verdict only from exact McNemar where it applies).",
                             check=((lambda v: v >= 0, ">= 0"), (lambda v: v <= MAX_BOOTSTRAP, f"<= {MAX_BOOTSTRAP:,}")))
    seed: int = option(0, "Bootstrap seed (0 or more).", check=(lambda v: 0 <= v < 2**63, "0 or more"))
    alpha: float = option(0.05, "Significance level: (1 - alpha) intervals, verdicts at p < alpha.",
                           check=(lambda v: 0 < v < 1, "in (0, 1)"))
    resample_unit: str = option("image", "What the bootstrap and paired tests resample: sample (each question/"
                                 "report), image (first image path; default), study (meta study_id, else image), "
                                 "patient (meta patient_id or subject_id, else study, else image).",
                                 choices=RESAMPLE_UNITS)
    proportion_interval: str = option("wilson", "Interval reported for 0/1 accuracies: wilson, clopper-pearson "
                                       "(both at the cluster-adjusted effective n) or bootstrap (percentile).",
                                       choices=PROPORTION_INTERVALS)
    progress: bool = option(False, "Show progress bars.", cli=False)


@dataclass(kw_only=True)
class ScoreCommand(Options):
    """`pefomed score PRED.jsonl [...] [--compare B.jsonl ...] --out METRICS.json`."""

    predictions: list[Path] = option(help="PRED.jsonl file(s); several = seeds of one setting (mean ± std), or of "
                                          "side A with `compare`.", positional=True)
    compare: list[Path] | None = option(None, "Paired comparison against this PRED.jsonl (same ids); repeat it for "
                                              "several seeds of side B.")
    out: Path | None = option(None, "METRICS.json to write (without it nothing is written, and the command says so).",
                              short="-o")
    report: Path | None = option(None, "Folder for report.md + report.html (default: OUT's folder/report).")
    settings: ScoreOptions = nested(ScoreOptions)
