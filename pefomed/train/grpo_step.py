"""One optimizer step of train.objective=grpo: rollouts, rewards, advantages, log-probabilities and
the clipped surrogate (pefomed.train.grpo_loss), through the same DeepSpeed engine as SFT.

Per micro-batch of B questions (the plan's micro-batch, so data order, sharding and resume are the
SFT run's): the B prompts are each repeated G times and answered by ONE batched, sampled `generate`
call of the PEFT policy (model.eval(), no grad); each answer is rewarded, advantages are normalised
within its group of G, and the policy's log-probabilities of the sampled tokens (image prompt
included in the forward) enter the loss. A process always holds whole questions, so a group's G
answers never straddle processes: the advantages are exact whatever the world size.

The reference is the same model with the adapter disabled (`disable_adapter()`): no second copy
of the base. beta = 0 skips that pass.

Rollout sampling draws from its own seed, a pure function of (train.seed, micro-batch index, rank),
inside `torch.random.fork_rng`: the global RNG (dropout) is untouched, and a resumed run draws
exactly the answers an uninterrupted one would, with no extra state to checkpoint.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from pefomed.errors import UserError
from pefomed.methods import METHODS
from pefomed.models.generation import Generator, to_device
from pefomed.train.grpo_loss import denominator, group_advantages, loss_sum, sequence_log_probs, token_terms
from pefomed.train.loss import scaled_for_deepspeed, supports_logits_to_keep
from pefomed.train.rewards import RewardSpec, rewards


def check_recipe(recipe) -> None:
    """What GRPO refuses before any model loads, naming the keys."""
    cfg = recipe.train
    if cfg.objective != "grpo":
        return
    if recipe.data.mix is not None:
        raise UserError("train.objective=grpo trains on one DATA_DIR; data.mix is not supported with it yet",
                        keys=["train.objective", "data.mix"])
    if cfg.feature_cache:
        raise UserError("train.feature_cache serves training batches, not sampled answers; it does not apply to "
                        "train.objective=grpo", hint="set train.feature_cache=false",
                        keys=["train.feature_cache", "train.objective"])
    if cfg.loss_kernel != "torch":
        raise UserError(f"train.loss_kernel={cfg.loss_kernel} fuses SFT's cross-entropy; GRPO computes "
                        "log-probabilities of sampled answers and does not use it",
                        hint="set train.loss_kernel=torch", keys=["train.loss_kernel", "train.objective"])
    if cfg.grpo.beta > 0 and not METHODS[recipe.method.name].has_adapter:
        # projector and full: with no adapter to disable, the "reference" would be the policy itself
        raise UserError("train.grpo.beta > 0 needs the reference model, which pefomed obtains by disabling the "
                        f"adapter; method.name={recipe.method.name} has none",
                        hint="set train.grpo.beta=0 or use an adapter method",
                        keys=["train.grpo.beta", "method.name"])


def rollout_seed(seed: int, micro: int, rank: int) -> int:
    return int.from_bytes(hashlib.sha256(f"grpo-rollout:{seed}:{micro}:{rank}".encode()).digest()[:6], "big")


def placeholder_tokens(model, processor) -> list[int]:
    """Token ids that stand for images or videos (never a valid answer token)."""
    ids = set()
    configs = [getattr(model, "config", None), getattr(getattr(model, "config", None), "text_config", None)]
    for source in [processor, *configs]:
        for name in ("image_token_id", "image_token_index", "video_token_id", "video_token_index"):
            value = getattr(source, name, None)
            if isinstance(value, int) and value >= 0:
                ids.add(value)
    tokenizer = getattr(processor, "tokenizer", None)
    for name in ("image_token", "video_token"):
        token = getattr(processor, name, None)
        if isinstance(token, str) and tokenizer is not None:
            value = tokenizer.convert_tokens_to_ids(token)
            if isinstance(value, int) and value >= 0 and value != tokenizer.unk_token_id:
                ids.add(value)
    return sorted(ids)


@dataclass
class Rollout:
    samples: list  # N = B * G, each question repeated G times, group after group
    prompt: dict  # the left-padded prompt batch on the device (N rows)
    completion: torch.Tensor  # (N, C) sampled token ids
    mask: torch.Tensor  # (N, C) 1 up to and including the first end-of-sequence token
    texts: list[str]
    rewards: torch.Tensor  # (N,)
    advantages: torch.Tensor  # (N,)
    old_logp: torch.Tensor | None = None  # (N, C), set by the first update when updates_per_rollout > 1
    ref_logp: torch.Tensor | None = None


class GrpoStepper:
    def __init__(self, engine, processor, recipe, image_root, samples_by_id: dict, rank: int, world: int, stage: int):
        self.engine, self.recipe, self.cfg = engine, recipe, recipe.train.grpo
        self.samples_by_id, self.rank, self.world = samples_by_id, rank, world
        self.generator = Generator(engine.module, processor, recipe.data, image_root, self.cfg.max_new_tokens,
                                   synced=stage == 3 and world > 1)
        self.spec = RewardSpec.of_recipe(recipe)
        self.suppressed = placeholder_tokens(engine.module, processor)
        self.eps_high = self.cfg.epsilon_high if self.cfg.epsilon_high is not None else self.cfg.epsilon

    # ---- rollout -------------------------------------------------------------------------------
    def rollout(self, ids: list[str], micro: int) -> Rollout:
        cfg, gen, model = self.cfg, self.generator, self.engine.module
        questions = [self.samples_by_id[i] for i in ids]
        samples = [s for s in questions for _ in range(cfg.num_generations)]
        prompt = to_device(gen.encode(samples), gen.device, gen.dtype)
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        was_training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(rollout_seed(self.recipe.train.seed, micro, self.rank))
                generated = model.generate(**prompt, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p,
                                           top_k=0, max_new_tokens=cfg.max_new_tokens, use_cache=True,
                                           eos_token_id=gen.eos, pad_token_id=gen.collator.pad_id,
                                           synced_gpus=gen.synced,
                                           # a sampled image placeholder would make the scoring forward
                                           # look for an image that is not there
                                           **({"suppress_tokens": self.suppressed} if self.suppressed else {}))
        finally:
            model.train(was_training)
        completion = generated[:, prompt["input_ids"].shape[1]:]
        if completion.shape[1] == 0:  # every row stopped at once: keep one (masked) position
            completion = torch.full((len(samples), 1), gen.collator.pad_id, device=generated.device)
        is_eos = torch.isin(completion, torch.tensor(gen.eos, device=completion.device))
        # tokens after the first end-of-sequence are padding: masked (the EOS itself is learned)
        after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
        mask = (~after_eos).long()
        texts = [t.strip() for t in gen.processor.tokenizer.batch_decode(completion * mask + gen.collator.pad_id *
                                                                          (1 - mask), skip_special_tokens=True)]
        reward = torch.tensor(rewards(texts, samples, self.spec)["reward"], dtype=torch.float32)
        advantages = group_advantages(reward, cfg.num_generations, scale=cfg.loss != "dr_grpo")
        return Rollout(samples, prompt, completion, mask, texts, reward, advantages)

    # ---- log-probabilities ----------------------------------------------------------------------
    def log_probs(self, model, r: Rollout) -> torch.Tensor:
        """(N, C) log-probabilities of the sampled tokens, the image prompt in the forward."""
        c = r.completion.shape[1]
        batch = dict(r.prompt)
        prompt_ids = batch["input_ids"]
        for key, value in list(batch.items()):
            # per-token side inputs (token_type_ids, mm_token_type_ids) extend over the completion
            if key not in ("input_ids", "attention_mask") and torch.is_tensor(value) and \
                    value.shape[:2] == prompt_ids.shape:
                batch[key] = torch.cat([value, torch.zeros_like(r.completion, dtype=value.dtype)], dim=1)
        batch["input_ids"] = torch.cat([prompt_ids, r.completion], dim=1)
        batch["attention_mask"] = torch.cat([batch["attention_mask"], r.mask.to(batch["attention_mask"].dtype)], dim=1)
        if supports_logits_to_keep(model):
            logits = model(**batch, logits_to_keep=c + 1).logits
        else:
            logits = model(**batch).logits
        logits = logits[:, -(c + 1):-1, :]  # position t predicts token t + 1
        return sequence_log_probs(logits, r.completion, self.cfg.temperature)

    def reference_log_probs(self, r: Rollout) -> torch.Tensor:
        model = self.engine.module
        disable = getattr(model, "disable_adapter", None)
        with torch.no_grad(), (disable() if disable is not None else nullcontext()):
            return self.log_probs(self.engine, r)

    # ---- the step ------------------------------------------------------------------------------
    def step(self, step_batches: list, first_micro: int) -> dict:
        """Rollouts for every micro-batch of the step, then updates_per_rollout optimizer steps on
        them; returns this step's statistics summed over processes."""
        import torch.distributed as dist

        from pefomed.train.distributed import device

        cfg, engine, grad_accum = self.cfg, self.engine, self.recipe.train.grad_accum
        start = time.perf_counter()
        rollouts = [self.rollout(ids, first_micro + k) for k, (ids, _) in enumerate(step_batches)]
        rollout_s = time.perf_counter() - start
        if cfg.beta:
            for r in rollouts:
                r.ref_logp = self.reference_log_probs(r)
        counts = torch.tensor([float(sum(r.mask.shape[0] for r in rollouts)),
                               float(sum(int(r.mask.sum()) for r in rollouts))], dtype=torch.float64, device=device())
        if self.world > 1:
            dist.all_reduce(counts)
        sequences, tokens = int(counts[0].item()), int(counts[1].item())
        denom = denominator(cfg.loss, sequences, tokens, cfg.max_new_tokens)
        loss_total, kl_sum, clipped_sum = 0.0, 0.0, 0.0
        for update in range(cfg.updates_per_rollout):
            for r in rollouts:
                logp = self.log_probs(engine, r)
                if update == 0:
                    r.old_logp = logp.detach()  # the rollout policy: ratio 1 on its first update
                terms = token_terms(logp, r.old_logp, r.advantages.to(logp.device), r.ref_logp, cfg.beta,
                                    cfg.epsilon, self.eps_high)
                part = loss_sum(terms.loss, r.mask, cfg.loss)
                engine.backward(scaled_for_deepspeed(part, denom, grad_accum, self.world))
                engine.step()
                loss_total += part.item() / denom
                if update == 0:
                    m = r.mask.to(logp.dtype)
                    if terms.kl is not None:
                        kl_sum += float((terms.kl.detach() * m).sum())
                    clipped_sum += float((terms.clipped.to(m.dtype) * m).sum())
        rewards_all = torch.cat([r.rewards for r in rollouts]).double()
        groups = rewards_all.view(-1, cfg.num_generations)
        stats = torch.tensor([float(loss_total) / cfg.updates_per_rollout, float(rewards_all.sum()), float(groups.std(dim=1).sum()),
                              float(groups.shape[0]), kl_sum, clipped_sum, float(rollout_s)],
                             dtype=torch.float64, device=device())
        if self.world > 1:
            dist.all_reduce(stats)
        return {"loss": stats[0].item(), "reward_sum": stats[1].item(), "reward_std_sum": stats[2].item(),
                "groups": stats[3].item(), "kl_sum": stats[4].item(), "clipped_sum": stats[5].item(),
                "rollout_s": stats[6].item() / self.world, "sequences": sequences, "tokens": tokens,
                "step_s": time.perf_counter() - start}
