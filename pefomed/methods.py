"""The tuning methods: the one table every stage reads (a foundation module, no torch, no peft).

The recipe's `method.name` choices, the study file's method names, what RUN_DIR keeps and whether
export can merge all come from METHODS; adding a method is a row here plus its peft config in
pefomed.models.peft_methods. arXiv 2403.06407 compared these on medical VLMs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MethodFacts:
    """What train, infer and export need to know of a method, in one table."""

    title: str
    has_adapter: bool  # saved as a PEFT adapter (adapter/), else as trained parameters (weights/)
    mergeable: bool  # its trained weights fold into the base weights (export --merge)
    quantizable: bool = False  # QLoRA: low-rank adapters over a 4-bit base


METHODS: dict[str, MethodFacts] = {
    "lora": MethodFacts("LoRA", has_adapter=True, mergeable=True, quantizable=True),
    "dora": MethodFacts("DoRA", has_adapter=True, mergeable=True, quantizable=True),
    "rslora": MethodFacts("rank-stabilised LoRA", has_adapter=True, mergeable=True, quantizable=True),
    "ia3": MethodFacts("IA3", has_adapter=True, mergeable=True),
    # prompt learning adds virtual tokens in front of the input: there is no weight to merge
    "prefix": MethodFacts("prefix tuning", has_adapter=True, mergeable=False),
    "prompt": MethodFacts("prompt tuning", has_adapter=True, mergeable=False),
    "projector": MethodFacts("projector-only training", has_adapter=False, mergeable=True),
    "full": MethodFacts("full fine-tuning", has_adapter=False, mergeable=True),
}
# the type of `method.name` and of a study's method names: pydantic lists these choices in its errors
MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
QUANTIZABLE_METHODS = tuple(name for name, facts in METHODS.items() if facts.quantizable)
ADAPTER_METHODS = tuple(name for name, facts in METHODS.items() if facts.has_adapter)
WEIGHT_METHODS = tuple(name for name, facts in METHODS.items() if not facts.has_adapter)
