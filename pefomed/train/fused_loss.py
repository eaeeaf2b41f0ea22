"""The training loss through a fused linear + cross-entropy kernel (`train.loss_kernel: liger`).

Answer-only logits (pefomed.train.loss) already run the LM head only where the loss is; the
logits of those positions are still materialised (answer tokens x vocabulary, in float32 for the
loss). liger-kernel's fused linear cross-entropy (the kernel LLaMA-Factory and ms-swift patch into
LLaVA and Qwen2-VL) computes the loss from the hidden states and the head's weight in chunks and
never holds the whole logits tensor, which matters for 150 k-260 k vocabularies and long reports.

liger patches each family's forward to reach the hidden states; those patches follow transformers'
class layouts release by release. Here instead the output embedding module's forward is replaced,
for one call, by a function that computes the loss from the hidden states it receives and returns
zero-width logits: every family (and pefomed's composed model) reaches its head the same way, the
PEFT wrappers and prompt tuning's virtual tokens run unchanged, and under ZeRO-3 the head's weight
is gathered, as for any module's forward, exactly while the loss uses it.

The kernel is a Triton CUDA kernel, so it is refused off CUDA (`check_loss_kernel`). What the CPU
can prove is the plumbing: with `linear_cross_entropy_sum` (plain torch) as the kernel, the loss and
its gradients equal the standard path's (tests/train/test_loss_kernel.py); the GPU check
(benchmarks/gpu_check.py) measures liger's memory and speed against it in one run.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
import torch.nn.functional as F

from pefomed.data.collate import IGNORE_INDEX
from pefomed.errors import UserError
from pefomed.models.bundle import innermost

# (head weight, hidden states [N, H], targets [N], head bias or None, softcap or None) -> loss sum
LinearCrossEntropy = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None", "float | None"],
                              torch.Tensor]

LIGER_HINT = "pip install 'pefomed[liger]' (liger-kernel and Triton, on a CUDA machine)"


def linear_cross_entropy_sum(weight, hidden, targets, bias=None, softcap=None) -> torch.Tensor:
    """The unfused reference: head, optional tanh softcap (Gemma 2/3), float32 cross-entropy sum."""
    logits = F.linear(hidden, weight, bias).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")


def liger_cross_entropy_sum() -> LinearCrossEntropy:
    """liger-kernel's fused linear cross-entropy, summed over the given tokens."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    kernels: dict = {}

    def fused(weight, hidden, targets, bias=None, softcap=None):
        if softcap not in kernels:
            kernels[softcap] = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum",
                                                                softcap=softcap or None)
        return kernels[softcap](weight, hidden, targets, bias)

    return fused


_PROBED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # innermost model -> its softcap (or None)


def _call_with_head(model, batch: dict, labels: torch.Tensor, keep, head_forward):
    """Run the model's own forward with its output embeddings' forward replaced for this call."""
    head = innermost(model).get_output_embeddings()
    head.forward = head_forward
    try:
        if keep is None:
            return model(**batch)
        reference = batch.get("input_ids", batch.get("inputs_embeds"))
        indices = keep - labels.shape[1]
        return model(**batch, logits_to_keep=indices.to(reference.device) if reference is not None else indices)
    finally:
        del head.__dict__["forward"]  # the instance attribute shadowed the class's method


def head_transform(model, batch: dict, labels: torch.Tensor, keep=None) -> float | None:
    """The softcap the model applies to its logits after the head, found by running it once.

    Whether a family applies `final_logit_softcapping` differs class by class and release by
    release (transformers 5.25's Gemma3ForCausalLM does, its Gemma3ForConditionalGeneration does
    not), so the config alone cannot tell. One forward without gradients, its head returning known
    values, shows what the model does to them: nothing, tanh softcapping by the configured cap, or
    something the fused loss cannot reproduce (Cohere's logit_scale, ...), which is refused
    rather than trained on a different loss."""
    inner = innermost(model)
    if inner in _PROBED:
        return _PROBED[inner]
    probe: dict = {}

    def known_values(hidden: torch.Tensor) -> torch.Tensor:
        # integers in bfloat16's exact range, large enough that a softcap of any size shows
        values = torch.linspace(-64, 64, hidden.shape[1], device=hidden.device).round()
        probe["in"] = values
        return values.to(hidden.dtype).view(1, -1, 1).expand(*hidden.shape[:-1], 1).clone()

    # the probe must not consume random numbers (dropout): `train --resume` replays the RNG exactly
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        out = _call_with_head(model, batch, labels, keep, known_values).logits.float()[0, :, 0]
    values = probe["in"].to(out.device)
    config = inner.config
    cap = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                  "final_logit_softcapping", None)
    tolerance = dict(rtol=1e-2, atol=1e-2)  # bfloat16 logits
    if torch.allclose(out, values, **tolerance):
        found = None
    elif cap and torch.allclose(out, torch.tanh(values / cap) * cap, **tolerance):
        found = float(cap)
    else:
        raise UserError(f"train.loss_kernel=liger: {type(inner).__name__} transforms its logits after the head "
                        "in a way the fused loss does not reproduce (not a tanh softcap)",
                        hint="use train.loss_kernel=torch with this model", keys=("train.loss_kernel",))
    _PROBED[inner] = found
    return found


def fused_loss_sum(model, batch: dict, labels: torch.Tensor, kernel: LinearCrossEntropy,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of the answer-token losses of one micro-batch, computed by `kernel` from the hidden
    states the LM head receives. `keep` (pefomed.train.loss.loss_positions) is passed as
    `logits_to_keep` when the model takes it; the head then sees only those positions."""
    inner = innermost(model)
    head = inner.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise UserError(f"train.loss_kernel=liger: {type(inner).__name__} has no linear output head",
                        keys=("train.loss_kernel",))
    softcap = head_transform(model, batch, labels, keep)
    length = labels.shape[1]
    result: dict = {}

    def loss_instead_of_logits(hidden: torch.Tensor) -> torch.Tensor:
        if keep is not None and hidden.shape[1] == keep.numel():
            targets = labels[:, keep + 1]
        else:  # every position (prompt tuning's virtual tokens first: the labels are the last L)
            hidden = hidden[:, -length:][:, :-1]
            targets = labels[:, 1:]
        targets = targets.to(hidden.device)
        answer = targets != IGNORE_INDEX
        # only answer tokens enter the kernel: the same sum, and no work on masked positions
        result["loss"] = kernel(head.weight, hidden[answer], targets[answer], getattr(head, "bias", None), softcap)
        return hidden.new_zeros(*hidden.shape[:-1], 0)

    _call_with_head(model, batch, labels, keep, loss_instead_of_logits)
    if "loss" not in result:
        raise RuntimeError(f"{type(inner).__name__}'s forward did not call its output embeddings")
    return result["loss"]


def check_loss_kernel(kernel: str, zero_stage: int | None = None, head_trainable: bool = False) -> None:
    """Refuse `train.loss_kernel=liger` where it cannot run: off CUDA, without liger-kernel, or
    under ZeRO-3 with a trained head (the kernel computes the head's gradient in its forward, on
    the gathered weight, which ZeRO-3's partitioned gradient hooks do not see)."""
    if kernel != "liger":
        return
    try:
        import liger_kernel.transformers  # noqa: F401
    except ImportError as err:
        raise UserError(f"train.loss_kernel=liger: liger-kernel is not installed ({err})", hint=LIGER_HINT,
                        keys=("train.loss_kernel",)) from None
    if not torch.cuda.is_available():
        raise UserError("train.loss_kernel=liger needs a CUDA GPU (liger-kernel is a Triton CUDA kernel); "
                        "this machine has none", hint="use train.loss_kernel=torch (the default) here",
                        keys=("train.loss_kernel",))
    if zero_stage == 3 and head_trainable:
        raise UserError("train.loss_kernel=liger with a trained LM head is not supported under ZeRO-3",
                        hint="use ZeRO-2, or keep the head frozen (the default for every method)",
                        keys=("train.loss_kernel",))
