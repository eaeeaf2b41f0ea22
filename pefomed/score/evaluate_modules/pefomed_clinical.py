"""pefomed clinical efficacy (rule-based CheXpert-style labeler; NOT comparable with CheXbert) as
an `evaluate` metric."""

import datasets
import evaluate
import numpy as np

from pefomed.score.clinical import DEFAULT_UNCERTAIN, FIVE, OBSERVATIONS, confusion, label_matrix, precision_recall_f1

_DESCRIPTION = "CE precision/recall/F1 (micro, macro) over 14 CheXpert observations and the 5-label subset."
_KWARGS = """
Args:
    predictions: list of str reports. references: list of str reports.
    uncertain: "negative" (default: R2Gen's protocol, uncertain -> 0), "positive" or "ignore".
Returns: {"f1_micro/14", "f1_macro/14", "f1_micro/5", ...}.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class PefomedClinical(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references, uncertain=DEFAULT_UNCERTAIN):
        conf = confusion(label_matrix(list(predictions), uncertain), label_matrix(list(references), uncertain))
        out = {}
        for suffix, obs in (("14", OBSERVATIONS), ("5", FIVE)):
            c = conf[:, [OBSERVATIONS.index(o) for o in obs], :].sum(axis=0)  # (L, 3)
            micro = precision_recall_f1(*c.sum(axis=0))
            macro = [np.mean(x) for x in precision_recall_f1(c[:, 0], c[:, 1], c[:, 2])]
            for i, name in enumerate(("precision", "recall", "f1")):
                out[f"{name}_micro/{suffix}"] = float(micro[i])
                out[f"{name}_macro/{suffix}"] = float(macro[i])
        return out
