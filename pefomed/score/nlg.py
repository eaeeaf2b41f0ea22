"""Report-generation metrics as METRICS.json entries: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D,
each with its bootstrap interval. The kernels (tokenization, n-gram statistics, the formulas and
their parity with pycocoevalcap) are pefomed.metrics.nlg's; this module turns them into
per-sample statistics that pefomed.score.stats resamples.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pefomed.metrics.nlg import BETA, N, NlgStats, bleu_from_sums, tokenize_pairs  # noqa: F401
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, mean_stats


def _references(row: Row) -> list[str]:
    return list(row.references) if row.references else [row.reference]


def report_metrics(rows: list[Row], tokenizer: str = "ptb", meteor: bool = True,
                   notes: dict[str, Any] | None = None, progress: bool = False) -> list[MetricSpec]:
    """Metric specs of the `report` section over the report rows of `rows`."""
    specs, finish = start_report_metrics(rows, tokenizer, meteor, notes, progress=progress)
    return in_report_order(specs + finish())


def in_report_order(specs: list[MetricSpec]) -> list[MetricSpec]:
    """METEOR (computed last) back in its place, after BLEU-4: the order of METRICS.json and reports."""
    late = [s for s in specs if s.section == "report" and s.name == "METEOR"]
    rest = [s for s in specs if not (s.section == "report" and s.name == "METEOR")]
    at = next((i + 1 for i, s in enumerate(rest) if s.section == "report" and s.name == f"BLEU-{N}"), len(rest))
    return rest[:at] + late + rest[at:]


def start_report_metrics(rows: list[Row], tokenizer: str = "ptb", meteor: bool = True,
                         notes: dict[str, Any] | None = None, progress: bool = False
                         ) -> tuple[list[MetricSpec], Callable[[], list[MetricSpec]]]:
    """report_metrics in two halves: METEOR's JVM starts first and scores in the background while
    BLEU, ROUGE-L and CIDEr-D are computed here (and whatever the caller computes next: the clinical
    labels, every other metric's bootstrap). Returns those specs and a function that waits for
    METEOR and gives its spec (none without --meteor); in_report_order puts it back in its place.
    `progress`: progress bars for tokenization, the n-gram metrics and the wait for METEOR."""
    mask = np.array([r.task == "report" for r in rows])
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return [], lambda: []
    job = None
    if meteor:
        from pefomed.score.meteor import MeteorJob

        job = MeteorJob()  # the JVM loads its tables while the captions are tokenized
    hyps = [rows[i].prediction for i in idx]
    refs = [_references(rows[i]) for i in idx]
    used: dict = {}
    try:
        th, tr = tokenize_pairs(hyps, refs, tokenizer, info=used, progress=progress)
    except BaseException:
        if job is not None:
            job.close()
        raise
    if job is not None:
        job.submit(th, tr)
    stats = NlgStats(th, tr, progress=progress)
    n_rows, n = len(rows), int(idx.size)
    full_bleu = np.zeros((n_rows, 10))
    full_bleu[idx] = stats.bleu
    specs = [MetricSpec("report", f"BLEU-{k}", full_bleu, (lambda s, k=k: bleu_from_sums(s, k)), n=n)
             for k in range(1, N + 1)]
    rest = []
    for name, per_sample in (("ROUGE-L", stats.rouge), ("CIDEr-D", stats.cider)):
        per = np.zeros(n_rows)
        per[idx] = per_sample
        st, fn = mean_stats(per, mask)
        rest.append(MetricSpec("report", name, st, fn, n=n))
    if notes is not None:
        notes["report_metrics"] = {"reference": "pycocoevalcap 1.2", "bleu_reflen": "closest", "rouge_beta": BETA,
                                   "cider": "CIDEr-D, sigma 6, df from the scored references",
                                   "cider_interval": "bootstrap of per-sample scores with df held at the full corpus",
                                   "meteor": "corpus score of meteor-1.5.jar -l en -norm (what pycocoevalcap reports), "
                                             "from summed per-segment statistics",
                                   "meteor_interval": "bootstrap of the corpus score recomputed from resampled sums of "
                                                      "the jar's per-segment statistics"}
        if used:
            # Which tokenizer produced the tokens: the Python path, or the CoreNLP jar for captions in
            # an input class only the jar tokenizes exactly (counts per class); "approximate" counts
            # captions that needed the jar when it was unavailable.
            notes["report_tokenization"] = used

    def finish() -> list[MetricSpec]:
        if job is None:
            return []
        from pefomed.score.meteor import N_STATS, aggregable
        from pefomed.score.meteor import score_from_sums as meteor_from_sums

        result = job.result(progress=progress)
        if result.available:
            # One statistic, with its own interval: the jar's corpus score is a function of the summed
            # per-segment statistics, so each resample recomputes it from resampled sums (as for BLEU).
            per = np.zeros((n_rows, N_STATS))
            per[idx] = aggregable(result.stats)
            meteor_spec = MetricSpec("report", "METEOR", per, meteor_from_sums, n=n, value=result.corpus,
                                     extra={"statistic": "corpus"})
        else:
            meteor_spec = MetricSpec("report", "METEOR", np.zeros((n_rows, 2)), lambda s: s[..., 0] * np.nan, n=n,
                                     extra={"unavailable": result.reason})
        return [meteor_spec]

    return specs + rest, finish
