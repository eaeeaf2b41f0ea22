"""Reference parity: pefomed's GRPO loss equals TRL's for the same log-probabilities, advantages and
masks, for each variant; and the split into a per-micro-batch sum and a global denominator gives the
same loss however the batch is cut.

TRL is not a test dependency (it pulls in datasets, pandas, pyarrow and accelerate), so its formula
is transcribed here line for line from trl 1.16.0 (`pip download trl==1.16.0 --no-deps`):
trl/trainer/grpo_trainer.py, GRPOTrainer._compute_loss (token-level importance sampling, no
vLLM/entropy/off-policy masks, delta=None, use_bias_correction_kl=False, one accumulation step),
and the advantages from GRPOTrainer._generate_and_score_completions with trl/trainer/utils.py nanstd.
"""

from __future__ import annotations

import pytest
import torch

from pefomed.train.grpo_loss import (denominator, group_advantages, grpo_loss, loss_sum, sequence_log_probs,
                                     token_terms)


def trl_advantages(rewards, num_generations, scale_rewards="group"):
    # _generate_and_score_completions (scale_rewards "group" / "none")
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    grouped = rewards.view(-1, num_generations)
    # utils.nanstd
    mean = torch.nanmean(grouped, dim=1, keepdim=True)
    variance = torch.nanmean((grouped - mean) ** 2, dim=1, keepdim=True)
    count = torch.sum(~torch.isnan(grouped), dim=1, keepdim=True)
    variance = variance * count / (count - 1)
    std_rewards = torch.sqrt(variance).squeeze(1).repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def trl_loss(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages, mask, loss_type, beta,
             epsilon_low, epsilon_high, max_completion_length):
    advantages = advantages.unsqueeze(1)
    log_ratio = per_token_logps - old_per_token_logps
    coef_1 = torch.exp(log_ratio)
    if beta != 0.0:
        per_token_kl = torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dr_grpo":
        return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)
    if loss_type == "dapo":  # num_items_in_batch: the completion tokens of the batch, one process
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    raise AssertionError(loss_type)


def random_batch(seed, groups=3, generations=4, length=7):
    gen = torch.Generator().manual_seed(seed)
    n = groups * generations
    logp = -torch.rand(n, length, generator=gen, dtype=torch.float64) * 3
    old = logp + 0.3 * torch.randn(n, length, generator=gen, dtype=torch.float64)  # ratios well outside 1 +- eps
    ref = logp + 0.5 * torch.randn(n, length, generator=gen, dtype=torch.float64)
    lengths = torch.randint(1, length + 1, (n,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).to(torch.float64)
    rewards = torch.randint(0, 3, (n,), generator=gen).to(torch.float64) / 2
    return logp, old, ref, mask, rewards


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("scale", [True, False])
def test_advantages_equal_trl(seed, scale):
    *_, rewards = random_batch(seed)
    ours = group_advantages(rewards, 4, scale=scale).double()
    theirs = trl_advantages(rewards, 4, "group" if scale else "none")
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # a group of equal rewards has no advantage (TRL: 0 / (0 + 1e-4))
    assert group_advantages(torch.ones(4), 4).abs().max() == 0


@pytest.mark.parametrize("variant,eps_high", [("grpo", 0.2), ("dapo", 0.28), ("dr_grpo", 0.2)])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_equals_trl(variant, eps_high, beta, seed):
    logp, old, ref, mask, rewards = random_batch(seed)
    adv = trl_advantages(rewards, 4, "none" if variant == "dr_grpo" else "group")
    max_len = 9  # dr_grpo's constant is max_completion_length, not the padded width
    ours = grpo_loss(logp, old, adv, mask, variant, beta=beta, ref_logp=ref if beta else None,
                     epsilon_low=0.2, epsilon_high=eps_high, max_completion_length=max_len)
    theirs = trl_loss(logp, old, ref, adv, mask, variant, beta, 0.2, eps_high, max_len)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["grpo", "dapo", "dr_grpo"])
def test_gradient_equals_trl(variant):
    logp, old, ref, mask, rewards = random_batch(5)
    adv = trl_advantages(rewards, 4, "group")
    a, b = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    grpo_loss(a, old, adv, mask, variant, beta=0.1, ref_logp=ref, epsilon_high=0.28, max_completion_length=7).backward()
    trl_loss(b, old, ref, adv, mask, variant, 0.1, 0.2, 0.28, 7).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    assert a.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["grpo", "dapo", "dr_grpo"])
def test_micro_batch_split_gives_the_same_loss(variant):
    """Sums over micro-batches over the global denominator = the loss of the whole batch."""
    logp, old, ref, mask, rewards = random_batch(7, groups=4)
    adv = group_advantages(rewards, 4).double()
    whole = grpo_loss(logp, old, adv, mask, variant, beta=0.04, ref_logp=ref, max_completion_length=7)
    parts = torch.zeros((), dtype=torch.float64)
    for rows in (slice(0, 4), slice(4, 12), slice(12, 16)):
        terms = token_terms(logp[rows], old[rows], adv[rows], ref[rows], 0.04, 0.2, 0.2)
        parts = parts + loss_sum(terms.loss, mask[rows], variant)
    split = parts / denominator(variant, 16, int(mask.sum()), 7)
    torch.testing.assert_close(split, whole, rtol=1e-12, atol=1e-12)


def test_on_policy_ratio_is_one_and_clipping_counts():
    logp, _, ref, mask, rewards = random_batch(3)
    adv = group_advantages(rewards, 4).double()
    terms = token_terms(logp, logp.detach(), adv, None, 0.0, 0.2, 0.2)
    assert not terms.clipped.any() and terms.kl is None
    # on-policy GRPO without KL: loss = -mean A (per sequence), which is 0 for centred groups
    assert abs(float(loss_sum(terms.loss, mask, "grpo"))) < 1e-9
    far = token_terms(logp, logp - 1.0, adv, ref, 0.1, 0.2, 0.2)  # ratio e > 1.2: clipped where A > 0
    assert torch.equal(far.clipped, (adv > 0).unsqueeze(1).expand_as(logp))
    assert (far.kl >= 0).all()


def test_sequence_log_probs_match_log_softmax():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=gen)
    tokens = torch.randint(0, 11, (2, 5), generator=gen)
    out = sequence_log_probs(logits, tokens, temperature=0.7)
    expected = torch.log_softmax(logits / 0.7, dim=-1).gather(2, tokens[..., None])[..., 0]
    torch.testing.assert_close(out, expected)


def test_unknown_variant_and_partial_groups_refused():
    with pytest.raises(ValueError, match="variant"):
        loss_sum(torch.zeros(2, 2), torch.ones(2, 2), "ppo")
    with pytest.raises(ValueError, match="groups"):
        group_advantages(torch.zeros(5), 4)
