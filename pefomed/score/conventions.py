"""Human-readable names of the conventions a METRICS.json was computed under (settings)."""

from __future__ import annotations


def normalization(vqa_convention: str) -> str:
    if vqa_convention in ("llava-med", "llava-med-run-eval"):
        common = ("both strings normalized by LLaVA-Med's glossary.normalize_word (punctuation, periods, number "
                  "words -> digits, articles, contractions); open = calculate_f1score recall (shared words counted "
                  "with their occurrences in the prediction)")
        if vqa_convention == "llava-med":
            return ("llava-med (LLaVA-Med llava/eval/run_eval_batch.py): " + common
                    + "; closed = normalized reference is a substring of the normalized prediction")
        return ("llava-med-run-eval (LLaVA-Med llava/eval/run_eval.py): " + common
                + "; closed = prediction contains 'yes' or 'no' and the reference as substrings; closed rows "
                "with yes/no but without the reference are left out of the closed denominator, as that script does")
    if vqa_convention == "pefomed-paper":
        return ("pefomed-paper (PeFoMed's released MedVQAEval.preprocess_answer, "
                "pefomed/common/medvqa_tools/vqa_eval.py): each mark of ; / [ ] \" { } ( ) = + \\ _ - > < @ ` , ? ! "
                "deleted when it touches a space anywhere in the string (or the string has a digit,digit comma), "
                "else replaced by a space; other marks ('%', '~', ...) kept; periods not followed by a digit "
                "deleted; lowercase; number words -> digits; articles removed; contractions restored; "
                "'x ray' -> 'xray' as a substring; exact string match")
    return ("exact (pefomed's normalization): lowercase; punctuation removed/split (decimals and thousands kept); number words -> digits; "
            "articles a/an/the removed; contractions restored; 'x ray' -> 'xray'; exact string match")


def tokenizer(name: str) -> dict:
    if name == "ptb":
        return {"name": "ptb", "detail": "pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 PTBTokenizer "
                "-preserveLines -lowerCase, then its punctuation list removed): a Python re-implementation, "
                "and the jar itself for captions in input classes the Python path does not reproduce "
                "(counts under report_tokenization)"}
    return {"name": "whitespace", "detail": "lowercase, split on whitespace, no punctuation handling"}
