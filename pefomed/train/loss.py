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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pefomed.data.collate import IGNORE_INDEX


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


def micro_batch_loss_sum(model, batch: dict, labels: torch.Tensor) -> torch.Tensor:
    """Forward one micro-batch (without labels, so the model computes no loss of its own) and
    return the sum of its answer-token losses."""
    logits = model(**batch).logits
    return token_loss_sum(logits, labels)
