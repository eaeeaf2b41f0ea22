"""Instruction text: what the model is asked for each sample.

`data.vqa_template` wraps a VQA question; `data.report_prompt` asks for a report (a report
sample's own `prompt` wins when the source has one). Each can be one template, a list (a pool),
a {closed: [...], open: [...]} pool chosen by the sample's answer type (VQA), or the name of a
built-in pool ("pool:NAME"). From a pool, each sample gets one template chosen "at random" by a
hash of (data.template_seed, sample id): the same sample always gets the same instruction, in training
and at inference, and the choice does not depend on data order or process count.

The model's chat template (applied in collate) then adds the family's own turn markers and image
placeholders around this text.
"""

from __future__ import annotations

import hashlib

from pefomed.errors import UserError
from pefomed.records import Sample

# Built-in pools. "pefomed-paper" follows PeFoMed's instructions (arXiv 2401.02797): one VQA
# instruction behind the [vqa] task token, and [report] instructions for report generation. The
# report and "closed-open" pools are pefomed's own wording in the style those papers describe
# (task-specific instructions for closed and open questions, arXiv 2403.06407); they are not
# verbatim copies of any paper's lists.
POOLS: dict[str, object] = {
    "pefomed-paper-vqa": ["[vqa] Based on the image, respond to this question with a short answer: {question}"],
    "pefomed-paper-report": [
        "[report] Describe the given chest x-ray image in detail.",
        "[report] Take a look at this chest x-ray and describe the findings and impression.",
        "[report] Could you provide a detailed description of the given x-ray image?",
        "[report] Describe the given chest x-ray image as detailed as possible.",
        "[report] What are the key findings in this chest x-ray image?",
    ],
    "closed-open": {
        "closed": [
            "{question} Answer yes or no.",
            "Look at the image and answer with yes or no: {question}",
            "Question: {question} Reply with a single word.",
        ],
        "open": [
            "{question} Answer with a short phrase.",
            "Based on the image, answer briefly: {question}",
            "Question: {question} Give the answer in a few words.",
        ],
    },
}


def resolve(spec, key: str):
    """A template spec as the recipe gives it -> str | list | dict, with built-in pool names expanded."""
    if isinstance(spec, str) and spec.startswith("pool:"):
        name = spec[len("pool:"):]
        if name not in POOLS:
            label = f"recipe key '{key}'" if "." in key else f"`{key}`"
            raise UserError(f"{label}: unknown pool {name!r}; built-in pools: {', '.join(sorted(POOLS))}")
        return POOLS[name]
    return spec


def check(spec, key: str, needs_question: bool) -> None:
    """Validate a template spec early (recipe load, or an option), naming the recipe key (dotted)
    or the option key (in backticks, which cli/ spells as the flag)."""
    label = f"recipe key '{key}'" if "." in key else f"`{key}`"
    spec = resolve(spec, key)
    items = [spec] if isinstance(spec, str) else spec if isinstance(spec, list) else \
        [t for group in spec.values() for t in group]
    if isinstance(spec, dict) and not set(spec) <= {"closed", "open"}:
        raise UserError(f"{label}: a pool by answer type has keys closed and open, got {sorted(spec)}")
    if not items:
        raise UserError(f"{label}: the template pool is empty")
    for template in items:
        if needs_question and "{question}" not in template:
            raise UserError(f"{label}: template {template!r} has no {{question}} placeholder")
        try:
            template.format(question="")
        except (KeyError, IndexError, ValueError) as err:
            raise UserError(f"{label}: template {template!r} is not valid ({err}); "
                            "only {question} may appear in braces") from None


def _pick(pool: list[str], sample_id: str, seed: int) -> str:
    if len(pool) == 1:
        return pool[0]
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


def instruction(sample: Sample, data) -> str:
    seed = data.template_seed
    if sample.task == "vqa":
        spec = resolve(data.vqa_template, "data.vqa_template")
        if isinstance(spec, dict):
            spec = spec.get(sample.answer_type or "open") or [t for group in spec.values() for t in group]
        template = spec if isinstance(spec, str) else _pick(spec, sample.id, seed)
        return template.format(question=sample.question or "")
    if sample.prompt:
        return sample.prompt
    spec = resolve(data.report_prompt, "data.report_prompt")
    if isinstance(spec, dict):
        spec = [t for group in spec.values() for t in group]
    return spec if isinstance(spec, str) else _pick(spec, sample.id, seed)
