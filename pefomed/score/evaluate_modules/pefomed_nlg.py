"""pefomed report-generation metrics (pycocoevalcap-equal BLEU-1..4, ROUGE-L, CIDEr-D) as an
`evaluate` metric. METEOR is left to `pefomed score` (it needs a JVM)."""

import datasets
import evaluate

from pefomed.metrics.nlg import corpus_scores

_DESCRIPTION = "BLEU-1..4, ROUGE-L, CIDEr-D computed exactly as pycocoevalcap computes them."
_KWARGS = """
Args:
    predictions: list of str. references: list of list of str (one or more references each).
    tokenizer: "ptb" (default, pycocoevalcap's) or "whitespace".
Returns: {"BLEU-1", ..., "BLEU-4", "ROUGE-L", "CIDEr-D"}.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class PefomedNlg(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=[datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Sequence(datasets.Value("string"))}),
                      datasets.Features({"predictions": datasets.Value("string"),
                                         "references": datasets.Value("string")})])

    def _compute(self, predictions, references, tokenizer="ptb"):
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        return corpus_scores(list(predictions), refs, tokenizer)
