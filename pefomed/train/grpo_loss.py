"""The GRPO objective as pure tensor functions: group-normalised advantages, the per-token clipped
surrogate with a k3 KL penalty to the reference, and the three reductions users choose between.

Formulas (docs/grpo.md has them with their sources):

- advantage of sample i of a group of G answers to one question: A_i = (r_i - mean(r)) / (std(r) + 1e-4)
  (DeepSeekMath, arXiv 2402.03300, eq. 3 "outcome supervision"; std with Bessel's correction and the
  1e-4 as TRL's `nanstd` / `_generate_and_score_completions`); Dr. GRPO (arXiv 2503.20783) drops the
  division by std: A_i = r_i - mean(r).
- ratio rho_t = exp(logp_t - old_logp_t); surrogate -min(rho_t A, clip(rho_t, 1 - eps_low, 1 + eps_high) A)
  (PPO's clip; DAPO, arXiv 2503.14476, "clip-higher": eps_high separate from eps_low).
- KL to the reference, k3 estimator (Schulman, "Approximating KL divergence", used by DeepSeekMath
  eq. 4): exp(ref - logp) - (ref - logp) - 1, added as beta * KL per token; beta = 0: no reference.
- reductions of the per-token loss l_{i,t} over completion tokens (mask m_{i,t}):
  `grpo`     mean_i ( sum_t l m / sum_t m )            (DeepSeekMath: 1/G sum_i 1/|o_i| sum_t)
  `dapo`     sum_{i,t} l m / sum_{i,t} m               (DAPO: token-level normalisation)
  `dr_grpo`  sum_{i,t} l m / (N * max_completion_length) (Dr. GRPO: a constant, no length bias)

Each reduction is written as a *sum* over this process's micro-batch and a *denominator* that
belongs to the whole global batch (sequences or completion tokens summed over every micro-batch and
process), the same split as pefomed.train.loss uses for SFT: the update then does not depend on how
the global batch is cut into micro-batches, accumulation steps and processes. For one batch,
sum / denominator is exactly TRL's `_compute_loss` (tests/train/test_grpo_loss.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

LOSS_VARIANTS = ("grpo", "dapo", "dr_grpo")
STD_EPSILON = 1e-4  # TRL 1.16.0 grpo_trainer.py `_generate_and_score_completions`: A / (std + 1e-4)


def group_advantages(rewards: torch.Tensor, num_generations: int, scale: bool = True) -> torch.Tensor:
    """A_i per sample, rewards laid out group after group (G consecutive samples per question).

    `scale=False` is Dr. GRPO's (r - mean) only. A group whose rewards are all equal has zero
    advantages either way: it teaches nothing (and its std would be zero)."""
    if rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards are not whole groups of {num_generations}")
    grouped = rewards.float().view(-1, num_generations)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        # Bessel-corrected std (torch's default), as TRL's nanstd; one answer per group has no spread
        std = grouped.std(dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(grouped[:, :1])
        centred = centred / (std + STD_EPSILON)
    return centred.reshape(-1)


@dataclass
class TokenTerms:
    loss: torch.Tensor  # (N, T) per-token loss: clipped surrogate + beta * KL
    kl: torch.Tensor | None  # (N, T) k3 KL to the reference; None when beta = 0
    clipped: torch.Tensor  # (N, T) bool: the clip bound is the active branch (TRL's is_region_clipped)


def token_terms(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                ref_logp: torch.Tensor | None, beta: float, epsilon_low: float, epsilon_high: float) -> TokenTerms:
    """Per-token loss of the completions: `logp`, `old_logp`, `ref_logp` are (N, T) log-probabilities
    of the sampled tokens under the policy (with grad), the rollout policy and the reference;
    `advantages` is (N,)."""
    adv = advantages.unsqueeze(1).to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    loss = -torch.min(ratio * adv, clipped_ratio * adv)
    kl = None
    if beta != 0.0:
        if ref_logp is None:
            raise ValueError("beta != 0 needs the reference log-probabilities")
        delta = ref_logp - logp
        kl = torch.exp(delta) - delta - 1
        loss = loss + beta * kl
    clipped = ((ratio < 1 - epsilon_low) & (adv < 0)) | ((ratio > 1 + epsilon_high) & (adv > 0))
    return TokenTerms(loss=loss, kl=kl, clipped=clipped)


def loss_sum(per_token_loss: torch.Tensor, mask: torch.Tensor, variant: str) -> torch.Tensor:
    """This micro-batch's share of the loss before the global denominator (`denominator`)."""
    mask = mask.to(per_token_loss.dtype)
    masked = per_token_loss * mask
    if variant == "grpo":
        # each sequence's token mean; the denominator counts sequences
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum()
    if variant in ("dapo", "dr_grpo"):
        return masked.sum()
    raise ValueError(f"unknown GRPO loss variant {variant!r} (one of {', '.join(LOSS_VARIANTS)})")


def denominator(variant: str, sequences: int, completion_tokens: int, max_completion_length: int) -> float:
    """The global batch's divisor: sequences (`grpo`), completion tokens (`dapo`), sequences x
    max_completion_length (`dr_grpo`); every count summed over micro-batches and processes."""
    if variant == "grpo":
        return float(max(sequences, 1))
    if variant == "dapo":
        return float(max(completion_tokens, 1))
    if variant == "dr_grpo":
        return float(max(sequences, 1) * max_completion_length)
    raise ValueError(f"unknown GRPO loss variant {variant!r} (one of {', '.join(LOSS_VARIANTS)})")


def grpo_loss(logp, old_logp, advantages, mask, variant: str, beta: float = 0.0, ref_logp=None,
              epsilon_low: float = 0.2, epsilon_high: float = 0.2, max_completion_length: int | None = None):
    """The loss of one whole batch (sum / denominator): what a single-process, single-micro-batch
    step minimises; the training loop uses `loss_sum` and `denominator` separately."""
    terms = token_terms(logp, old_logp, advantages, ref_logp, beta, epsilon_low, epsilon_high)
    total = loss_sum(terms.loss, mask, variant)
    length = max_completion_length if max_completion_length is not None else mask.shape[1]
    return total / denominator(variant, mask.shape[0], int(mask.sum()), length)


def sequence_log_probs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(token_t) per position (float32): `logits` (N, T, V) are the ones predicting `tokens`
    (N, T). Divided by the sampling temperature, as TRL does, so the ratio compares the
    distribution the completions were drawn from."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return torch.gather(torch.log_softmax(logits, dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)
