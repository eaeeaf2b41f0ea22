"""Built-in prompt pools for per-model prompt selection (`prompts: builtin:NAME` in a study file).

A candidate is one way of asking: a VQA instruction template (with {question}), a system prompt, a
report prompt, and for few-shot adaptations the seed that picks the solved examples. Following
arXiv 2411.04118, each model is evaluated with every candidate on validation data and keeps its
best, so no model is judged by a prompt written for another. The wording below is pefomed's own
(answer-format lines in the style LLaVA-1.5 and the medical VQA papers use, e.g. "Answer with a
single word or phrase."); it is not copied from any paper's list.

Templates apply to every question of a split; the answer-format line is what makes an untuned
model answer "yes" rather than "Yes, there is a ...", which exact match would count wrong.
"""

from __future__ import annotations

VQA_SYSTEM = "You are a careful radiologist answering questions about medical images."
REPORT_SYSTEM = "You are a radiologist writing the findings section of a report."

POOLS: dict[str, list[dict]] = {
    # closed (yes/no) and open questions together: each template must work for both
    "vqa": [
        {"name": "plain", "template": "{question}"},
        {"name": "short", "template": "{question}\nAnswer with a single word or phrase."},
        {"name": "short-system", "template": "{question}\nAnswer with a single word or phrase.",
         "system_prompt": VQA_SYSTEM},
        {"name": "yes-no-or-short", "template": "{question}\nIf the question can be answered with yes or no, "
                                                "answer yes or no; otherwise answer with a short phrase."},
        {"name": "based-on-image", "template": "Based on the image, answer the question briefly.\n"
                                               "Question: {question}\nAnswer:"},
    ],
    # closed questions only (yes/no and multiple choice)
    "vqa-closed": [
        {"name": "plain", "template": "{question}"},
        {"name": "yes-no", "template": "{question}\nAnswer yes or no."},
        {"name": "yes-no-system", "template": "{question}\nAnswer yes or no.", "system_prompt": VQA_SYSTEM},
        {"name": "single-word", "template": "{question}\nAnswer with a single word."},
    ],
    # open questions only
    "vqa-open": [
        {"name": "plain", "template": "{question}"},
        {"name": "short", "template": "{question}\nAnswer with a single word or phrase."},
        {"name": "short-system", "template": "{question}\nAnswer with a single word or phrase.",
         "system_prompt": VQA_SYSTEM},
        {"name": "few-words", "template": "{question}\nGive the answer in a few words."},
    ],
    # report generation
    "report": [
        {"name": "findings", "report_prompt": "Describe the findings of this image."},
        {"name": "findings-system", "report_prompt": "Describe the findings of this image.",
         "system_prompt": REPORT_SYSTEM},
        {"name": "report", "report_prompt": "Write the findings and impression of a radiology report for this image."},
        {"name": "concise", "report_prompt": "Write a concise radiology report for this chest x-ray."},
    ],
}


def builtin_pool(name: str) -> list[dict]:
    from pefomed.errors import UserError

    if name not in POOLS:
        raise UserError(f"unknown built-in prompt pool {name!r}; built-in pools: {', '.join(sorted(POOLS))}")
    return [dict(c) for c in POOLS[name]]
