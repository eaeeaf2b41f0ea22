"""The optional reasoning template `<think>…</think><answer>…</answer>` (Med-R1's): whether a text
follows it, and the answer inside it, which is what infer writes and score reads.

Both rules are Med-R1's, from github.com/Yuxiang-Lai117/Med-R1 src/r1-v/src/open_r1/grpo_vqa.py
(inherited from R1-V): `format_reward` is a `re.fullmatch` of the pattern below with DOTALL, and
`accuracy_reward` compares the first `<answer>(.*?)</answer>` (stripped), or the whole text when
there is none.
"""

from __future__ import annotations

import re

THINK_ANSWER = "think_answer"
ANSWER_TEMPLATES = ("none", THINK_ANSWER)
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)</answer>")  # no DOTALL: Med-R1's accuracy_reward's pattern


def follows_template(text: str) -> bool:
    """The whole text is one think block then one answer block (Med-R1's format_reward)."""
    return _FORMAT.fullmatch(text) is not None


def extract_answer(text: str, template: str = THINK_ANSWER) -> str:
    """The answer of a generated text under `template`: for think_answer the first <answer> block,
    stripped, or the whole text stripped when it has none; for none the text unchanged."""
    if template == "none":
        return text
    if template != THINK_ANSWER:
        raise ValueError(f"unknown answer template {template!r}; one of {ANSWER_TEMPLATES}")
    match = _ANSWER.search(text)
    return match.group(1).strip() if match else text.strip()
