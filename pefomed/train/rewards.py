"""Verifiable rewards for train.objective=grpo, from pefomed's own metric kernels, so a run is
rewarded by the rule `pefomed score` later measures it with.

- answer reward: VQA rows score the (extracted) answer against the reference under
  train.grpo.vqa_convention (pefomed.metrics.vqa.per_sample_scores: 0/1 for exact and
  pefomed-paper, LLaVA-Med's recall in [0, 1] for open questions); report rows score ROUGE-L
  (pefomed.metrics.nlg.rouge_l, lowercased whitespace tokens) against the reference report.
- format reward: 1 when the whole text follows the reasoning template
  `<think>…</think><answer>…</answer>` (pefomed.metrics.reasoning, Med-R1's rule), else 0.

The answer is extracted under infer.answer_template, the same rule infer applies before writing
PRED.jsonl: what is rewarded is what is scored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pefomed.metrics.nlg import rouge_l
from pefomed.metrics.reasoning import extract_answer, follows_template
from pefomed.metrics.tokenize import whitespace_tokenize
from pefomed.metrics.vqa import per_sample_scores
from pefomed.records import Sample


@dataclass(frozen=True)
class RewardSpec:
    answer_weight: float = 1.0
    format_weight: float = 0.0
    vqa_convention: str = "exact"
    answer_template: str = "none"  # infer.answer_template

    @classmethod
    def of_recipe(cls, recipe) -> "RewardSpec":
        g = recipe.train.grpo
        return cls(g.answer_reward, g.format_reward, g.vqa_convention, recipe.infer.answer_template)


def answer_rewards(texts: list[str], samples: list[Sample], spec: RewardSpec) -> list[float]:
    """The answer reward of each generated text against its sample's reference."""
    answers = [extract_answer(t.strip(), spec.answer_template) for t in texts]
    out = [0.0] * len(texts)
    vqa = [i for i, s in enumerate(samples) if s.task == "vqa"]
    if vqa:
        scores = per_sample_scores([answers[i] for i in vqa], [samples[i].answer for i in vqa],
                                   [samples[i].answer_type for i in vqa], spec.vqa_convention)
        for i, score in zip(vqa, scores):
            out[i] = float(score)
    for i, sample in enumerate(samples):
        if sample.task != "vqa":
            # lowercased whitespace tokens: a cheap per-sample ROUGE-L (score's PTB tokenizer may start a jar)
            out[i] = float(rouge_l(whitespace_tokenize(answers[i]), [whitespace_tokenize(sample.answer)])) \
                if answers[i].strip() else 0.0
    return out


def format_rewards(texts: list[str]) -> list[float]:
    return [1.0 if follows_template(t.strip()) else 0.0 for t in texts]


def rewards(texts: list[str], samples: list[Sample], spec: RewardSpec) -> dict[str, list[float]]:
    """{"reward": weighted sum, "answer": ..., "format": ...} per text; samples[i] is what text i answers."""
    answer = answer_rewards(texts, samples, spec)
    fmt = format_rewards(texts) if spec.format_weight else [0.0] * len(texts)
    total = [spec.answer_weight * a + spec.format_weight * f for a, f in zip(answer, fmt)]
    return {"reward": total, "answer": answer, "format": fmt}
