"""Instruction text: what the model is asked for each sample.

The recipe's `data.vqa_template` wraps a VQA question ("{question}" by default); report samples
use their own prompt when the source has one, else `data.report_prompt`. The model's chat
template (applied in collate) then adds the family's own turn markers and image placeholders.
"""

from __future__ import annotations

from pefomed.errors import UserError
from pefomed.recipe import DataSection
from pefomed.records import Sample


def instruction(sample: Sample, data: DataSection) -> str:
    if sample.task == "vqa":
        try:
            return data.vqa_template.format(question=sample.question or "")
        except (KeyError, IndexError) as err:
            raise UserError(f"recipe key 'data.vqa_template': unknown placeholder {err}; use {{question}}") from None
    return sample.prompt or data.report_prompt
