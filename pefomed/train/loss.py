"""The training loss: mean cross-entropy over the answer tokens of the whole global batch.

Answers have very different lengths (VQA "yes" vs a 100-token report). Averaging each
micro-batch's own token mean, as a model's built-in loss does, weights a token by how many others
share its micro-batch, so the gradient of one global batch would change with how it is split into
micro-batches, accumulation steps and processes. Here every answer token of the global batch
weighs the same: each micro-batch contributes the *sum* of its token losses divided by the answer
tokens of the whole global batch (counted before the first backward, summed over processes), the
normalisation transformers' Trainer applies through `num_items_in_batch`.

DeepSpeed then divides each backward by the accumulation steps and averages gradients over
processes; `scaled_for_deepspeed` multiplies those factors back in, so the update is exactly
sum(token losses) / tokens of the global batch, however the batch is split.

Answer-only logits (`train.answer_only_logits`): the LM head is the largest activation of a VLM
step (Gemma 3: 262 k vocabulary x 1,024 positions x 4 bytes ~ 1 GB per sample in fp32), yet only
the positions that predict an answer token enter the loss. transformers' `logits_to_keep` (a 1D
tensor of sequence indices shared by the batch) slices the hidden states before the head, so
`micro_batch_loss_sum` asks for the union over the batch of those positions only. The values at
the kept positions are the same numbers the full head computes (softcapping and scaling are
elementwise), so the loss and its gradients are unchanged (tests/train/test_answer_only_logits.py).
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from pefomed.data.collate import IGNORE_INDEX
from pefomed.models.bundle import innermost
from pefomed.train.fused_loss import LinearCrossEntropy, fused_loss_sum


def answer_tokens(labels: torch.Tensor) -> int:
    """Tokens the loss covers in a micro-batch (labels shifted by one: position t predicts t+1)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the cross-entropy of every answer token (float32, whatever the model's dtype).

    Prompt tuning puts its virtual tokens in front of the sequence, so the logits can be longer
    than the labels: the labels belong to the last positions."""
    if logits.shape[1] > labels.shape[1]:
        logits = logits[:, -labels.shape[1]:, :]
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def scaled_for_deepspeed(loss_sum: torch.Tensor, global_tokens: int, grad_accum: int, world: int) -> torch.Tensor:
    """The value to hand to engine.backward so the step's gradient is sum / global_tokens."""
    return loss_sum * (grad_accum * world) / max(global_tokens, 1)


_SUPPORTS: dict[type, bool] = {}


def supports_logits_to_keep(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (every transformers 5 image-text family
    and pefomed's composed model do; remote code or an old class may not)."""
    inner = innermost(model)
    kind = type(inner)
    if kind not in _SUPPORTS:
        try:
            _SUPPORTS[kind] = "logits_to_keep" in inspect.signature(inner.forward).parameters
        except (TypeError, ValueError):
            _SUPPORTS[kind] = False
    return _SUPPORTS[kind]


def loss_positions(labels: torch.Tensor) -> torch.Tensor:
    """Label positions t (0 .. L-2) whose logits predict an answer token t+1 in any row of the
    batch: the union, because transformers' 1D `logits_to_keep` is shared by the batch. Never
    empty (a fully masked micro-batch keeps its last position, whose loss is 0), so every process
    still runs the LM head and ZeRO-3's gathers stay in step."""
    keep = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    if keep.numel() == 0:
        keep = torch.tensor([labels.shape[1] - 2], device=labels.device)
    return keep


def answer_only_loss_sum(model, batch: dict, labels: torch.Tensor):
    """(sum of answer-token losses, logits) with the LM head run only at `loss_positions`.

    The indices are given counted from the end of the sequence (t - L): prompt tuning puts its
    virtual tokens in front, and the labels belong to the last L positions of the hidden states
    either way (as in `token_loss_sum`)."""
    length = labels.shape[1]
    keep = loss_positions(labels)
    reference = batch.get("input_ids", batch.get("inputs_embeds"))
    indices = keep - length
    if reference is not None:
        indices = indices.to(reference.device)
    logits = model(**batch, logits_to_keep=indices).logits
    if logits.shape[1] != keep.numel():
        # the model took the argument but returned every position: use them all
        return token_loss_sum(logits, labels), logits
    targets = labels[:, keep + 1].to(logits.device)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, logits


def micro_batch_loss_sum(model, batch: dict, labels: torch.Tensor, answer_only: bool = True,
                         kernel: LinearCrossEntropy | None = None) -> torch.Tensor:
    """Forward one micro-batch (without labels, so the model computes no loss of its own) and
    return the sum of its answer-token losses; with `answer_only` (train.answer_only_logits) the
    LM head runs only where the loss is, for models that support `logits_to_keep`. A `kernel`
    (train.loss_kernel, pefomed.train.fused_loss) computes head and loss in one fused step."""
    if kernel is not None:
        keep = loss_positions(labels) if answer_only and supports_logits_to_keep(model) else None
        return fused_loss_sum(model, batch, labels, kernel, keep)
    if answer_only and supports_logits_to_keep(model):
        return answer_only_loss_sum(model, batch, labels)[0]
    logits = model(**batch).logits
    return token_loss_sum(logits, labels)
