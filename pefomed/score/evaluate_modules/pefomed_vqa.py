"""pefomed VQA accuracy as an `evaluate` metric (for HF Trainer's compute_metrics)."""

import datasets
import evaluate

from pefomed.metrics.vqa import CONVENTIONS, answer_type_of, counted_rows, per_sample_scores

_DESCRIPTION = ("Medical VQA accuracy: exact match after pefomed's normalization, PeFoMed's released scorer, or "
                "LLaVA-Med's lenient rules.")
_KWARGS = """
Args:
    predictions: list of str. references: list of str.
    convention: "exact" (default, pefomed's normalization), "pefomed-paper" (PeFoMed's released
        MedVQAEval.preprocess_answer, quirks included), "llava-med" (LLaVA-Med's run_eval_batch.py) or
        "llava-med-run-eval" (its run_eval.py: closed rows whose prediction has yes/no but not the
        reference leave the denominator, as there).
    answer_types: optional list of "closed"/"open" (default: yes/no references are closed).
Returns: {"accuracy", "closed", "open"} (closed/open only when present).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class PefomedVqa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}))

    def _compute(self, predictions, references, convention="exact", answer_types=None):
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}")
        kinds = [answer_type_of(r, (answer_types or [None] * len(references))[i]) for i, r in enumerate(references)]
        scores = per_sample_scores(list(predictions), list(references), kinds, convention)
        keep = counted_rows(list(predictions), list(references), kinds, convention)
        kept = scores[keep]
        out = {"accuracy": float(kept.mean()) if len(kept) else 0.0}
        for kind in ("closed", "open"):
            sel = [s for s, k, counted in zip(scores, kinds, keep) if k == kind and counted]
            if sel:
                out[kind] = float(sum(sel) / len(sel))
        return out
