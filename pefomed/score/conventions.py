"""Human-readable names of the conventions a METRICS.json was computed under (settings)."""

from __future__ import annotations


def normalization(vqa_convention: str) -> str:
    if vqa_convention == "llava-med":
        return ("llava-med: lowercase, punctuation -> space; closed = reference substring of prediction; "
                "open = recall of reference tokens (with repetition) in prediction")
    return ("exact: lowercase; punctuation removed/split (decimals and thousands kept); number words -> digits; "
            "articles a/an/the removed; contractions restored; 'x ray' -> 'xray'; exact string match")


def tokenizer(name: str) -> dict:
    if name == "ptb":
        return {"name": "ptb", "detail": "Python re-implementation of pycocoevalcap's PTBTokenizer "
                "(Stanford CoreNLP 3.4.1 PTBTokenizer -preserveLines -lowerCase, then its punctuation list removed)"}
    return {"name": "whitespace", "detail": "lowercase, split on whitespace, no punctuation handling"}
