"""The update phase: teacher-forced log-probs / values, advantages, PPO epochs.

``Learner.prepare(batch)`` fills old/ref log-probs, values, advantages and returns;
``Learner.update(batch)`` runs the mini-batch epochs with micro-batch gradient
accumulation. Losses are normalised by the token/row count of the whole mini-batch
across all ranks, so micro-batching and data parallelism give the gradient of one
big batch. Retrieved (injected) tokens are excluded from the policy loss, entropy
and KL when ``algorithm.mask_retrieved`` is on (the default).

On-policy shortcut: with one epoch and one mini-batch the behaviour policy *is* the
current policy, so ``old_logp`` is the detached log-prob of the training forward
(ratio = 1) instead of an extra teacher-forced pass — the same number, one forward fewer.
The rollout's recorded sampling log-probs are not used for this: they come from the
KV-cached decoding kernels, whose rounding differs slightly from the teacher-forced pass.

Other savings that keep the numbers: the log-probs and the logged entropy share one
``logsumexp`` and the entropy keeps no autograd graph unless ``entropy_coef > 0``
(``core_algos.logprobs_and_entropy``); each micro-batch is trimmed to its own longest row;
the teacher-forced passes skip the attention mask on right-padded rows and project only
response positions to the vocabulary (``batch.response_logits``). With ``actor.logprob_chunk_size``
the log-probs come from the last hidden states projected a chunk of positions at a time, forward and
backward, so no (micro-batch, length, vocab) logits exist (``batch.response_logprobs``).

Which teacher-forced path runs (the full forward, or each distinct prompt once with the
responses on its KV cache) is chosen once per run by ``batch.forward_mode``, for the training
pass and for the no-grad passes, and logged at INFO.
"""
from __future__ import annotations

import copy
import logging
import math
import warnings
from contextlib import nullcontext

import torch
from torch import Tensor

from searchr1.rl import core_algos as ca
from searchr1.rl import distributed as D
from searchr1.rl.batch import Batch, autocast_ctx, forward_logprobs, forward_mode, response_logprobs
from searchr1.rl.config import AlgorithmConfig, TrainConfig
from searchr1.rl.critic import ValueModel, forward_values
from searchr1.rl.fsdp import local_value, reshard, shard_model
from searchr1.rl.lm_head import hidden_unsupported


log = logging.getLogger(__name__)

# losses already normalised by the global count: summed over micro-batches and ranks, not averaged
_SUMMED = ("actor/pg_loss", "actor/kl_loss", "critic/value_loss")


def compute_actor_loss(logits: Tensor, mb: Batch, algo: AlgorithmConfig, norm: Tensor | float | None = None,
                       kl_coef: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Policy loss of one micro-batch. logits: (b, R, V) at the response positions.

    Needs ``mb.advantages`` and (unless None = on-policy) ``mb.old_logp``; ``mb.ref_logp``
    when the KL is a loss term. Only ``mb.loss_mask(algo.mask_retrieved)`` tokens count.
    """
    # one logsumexp for both; the entropy carries gradient only when it is a loss term
    logp, ent = ca.logprobs_and_entropy(logits, mb.responses, entropy_grad=algo.entropy_coef > 0)  # (b, R)
    return actor_loss(logp, ent, mb, algo, norm, kl_coef)


def actor_loss(logp: Tensor, ent: Tensor, mb: Batch, algo: AlgorithmConfig, norm: Tensor | float | None = None,
               kl_coef: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Policy loss of one micro-batch from its log-probs and entropy, both (b, R) float32
    (with gradient; the entropy's only needed when ``algo.entropy_coef > 0``)."""
    mask = mb.loss_mask(algo.mask_retrieved).to(torch.float32)
    old = logp.detach() if mb.old_logp is None else mb.old_logp
    weight = None
    if algo.tis_cap > 0 and mb.rollout_logp is not None:
        weight = ca.tis_weights(old, mb.rollout_logp, algo.tis_cap)
    pg, st = ca.ppo_policy_loss(logp, old, mb.advantages, mask, algo.clip_eps, algo.clip_eps_high,
                                algo.dual_clip_c, algo.loss_agg_mode, norm, token_weight=weight)
    loss = pg
    stats = {"actor/pg_loss": pg.detach(), "actor/clipfrac": st.clipfrac, "actor/approx_kl": st.approx_kl,
             "actor/entropy": ca.masked_mean(ent.detach(), mask)}
    if weight is not None:
        stats["actor/tis_weight"] = ca.masked_mean(weight, mask)
        stats["actor/tis_capped"] = ca.masked_mean((weight >= algo.tis_cap).float(), mask)
    if algo.kl_placement == "loss":
        kl = ca.kl_penalty(logp, mb.ref_logp, algo.kl_estimator)
        kl_loss = ca.aggregate_loss(kl, mask, algo.loss_agg_mode, norm)
        loss = loss + kl_coef * kl_loss
        stats["actor/kl_loss"] = kl_loss.detach()
    if algo.entropy_coef > 0:
        loss = loss - algo.entropy_coef * ca.aggregate_loss(ent, mask, algo.loss_agg_mode, norm)
    return loss, stats


def _scheduler(opt, warmup_ratio: float, total: int, schedule: str, min_ratio: float):
    warm = int(round(warmup_ratio * total))

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if schedule == "constant":
            return 1.0
        frac = min(1.0, (step - warm) / max(1, total - warm))
        shape = 0.5 * (1 + math.cos(math.pi * frac)) if schedule == "cosine" else 1.0 - frac
        return min_ratio + (1 - min_ratio) * shape

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


class Learner:
    """Owns the policy, its reference, the critic and their optimizers."""

    def __init__(self, cfg: TrainConfig, policy, device: torch.device, critic: ValueModel | None = None):
        self.cfg, self.algo, self.device = cfg, cfg.algorithm, device
        self.policy = policy
        self.is_lora = cfg.model.lora_rank > 0
        self.ref = None
        if self.algo.kl_placement != "none" and not self.is_lora:
            self.ref = copy.deepcopy(policy).eval().requires_grad_(False)
        self.critic = critic
        if self.algo.name == "ppo" and critic is None:
            self.critic = ValueModel.from_policy(self._base_model(), cfg.critic.init).to(device)
        self.chunk = self._chunk_size()
        self.fsdp = cfg.distributed.strategy == "fsdp"
        if self.fsdp:   # after the reference and critic copies, before the optimizers see the parameters
            for m in (self.policy, self.ref, self.critic):
                if m is not None:
                    shard_model(m, cfg.distributed.mixed_precision, cfg.distributed.cpu_offload)
        o = cfg.optimizer
        params = [p for p in policy.parameters() if p.requires_grad]
        fused = True if o.fused else None    # None: torch picks its default (for-each) implementation
        self.opt = torch.optim.AdamW(params, lr=o.actor_lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                                     fused=fused)
        self.sched = _scheduler(self.opt, o.actor_warmup_ratio, cfg.total_steps, o.schedule, o.min_lr_ratio)
        self.copt = self.csched = None
        if self.critic is not None:
            self.copt = torch.optim.AdamW(self.critic.parameters(), lr=o.critic_lr, betas=tuple(o.betas),
                                          weight_decay=o.weight_decay, fused=fused)
            self.csched = _scheduler(self.copt, o.critic_warmup_ratio, cfg.total_steps, o.schedule, o.min_lr_ratio)
        if self.algo.kl_controller == "adaptive":
            self.kl_ctl = ca.AdaptiveKLController(self.algo.kl_coef, self.algo.kl_target, self.algo.kl_horizon)
        else:
            self.kl_ctl = ca.FixedKLController(self.algo.kl_coef)
        self.skipped_updates = 0
        self.consecutive_skips = 0
        self.updates = 0   # update() calls (the training step when the caller gives none)
        self.temperature = cfg.rollout.temperature if cfg.rollout.do_sample else 1.0
        self.train_mode, self.eval_mode = self._forward_modes()

    def _forward_modes(self) -> tuple[str, str]:
        """The teacher-forced path of the training pass and of the no-grad (reference / old
        log-prob) passes, from :func:`~searchr1.rl.batch.forward_mode`; logged once."""
        share, group = self.cfg.model.share_prompt, self.algo.group_size
        (train, why_t), (ev, why_e) = (forward_mode(self.policy, share, group, training) for training in (True, False))
        if (train, why_t) == (ev, why_e):
            log.info("teacher-forced passes: %s (%s)", train, why_t)
        else:
            log.info("teacher-forced passes: training %s (%s); reference/old-log-prob %s (%s)", train, why_t, ev, why_e)
        return train, ev

    def _chunk_size(self) -> int:
        """``actor.logprob_chunk_size``, or 0 (full logits, logged) when the policy's logits are not
        ``lm_head(last hidden state)`` (:func:`~searchr1.rl.lm_head.hidden_unsupported`)."""
        n = self.cfg.actor.logprob_chunk_size
        if n <= 0:
            return 0
        why = hidden_unsupported(self.policy)
        if why is not None:
            log.warning("actor.logprob_chunk_size=%d ignored, full logits instead: %s", n, why)
            return 0
        log.info("log-probs from hidden states, %d positions per vocabulary projection", n)
        return n

    def _base_model(self):
        """The policy without a LoRA wrapper (critic backbones start from the base weights)."""
        return self.policy.get_base_model() if self.is_lora else self.policy

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Optimizer (unless sharded: :meth:`sharded_state` holds it), scheduler, KL and counters."""
        s = {"sched": self.sched.state_dict(), "kl_coef": self.kl_ctl.value, "skipped_updates": self.skipped_updates}
        if not self.fsdp:
            s["opt"] = self.opt.state_dict()
        if self.copt is not None:
            s["csched"] = self.csched.state_dict()
            if not self.fsdp:
                s["copt"] = self.copt.state_dict()
        return s

    def sharded_state(self) -> dict:
        """(model, optimizer) pairs for ``fsdp.save_sharded`` / ``load_sharded``."""
        out = {"policy": (self.policy, self.opt)}
        if self.critic is not None:
            out["critic"] = (self.critic, self.copt)
        return out

    def load_state_dict(self, s: dict) -> None:
        if "opt" in s:
            self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.kl_ctl.value = float(s["kl_coef"])
        self.skipped_updates = int(s["skipped_updates"])
        if self.copt is not None and "csched" in s:
            self.csched.load_state_dict(s["csched"])
            if "copt" in s:
                self.copt.load_state_dict(s["copt"])

    # ------------------------------------------------------------------ prepare
    def _on_policy(self) -> bool:
        return self.algo.ppo_epochs == 1 and self.cfg.data.batch_size == self.cfg.data.mini_batch_size

    def _ref_ctx(self):
        return self.policy.disable_adapter() if self.is_lora else nullcontext()

    @torch.no_grad()
    def prepare(self, batch: Batch) -> dict[str, float]:
        """Fill old/ref log-probs, values, advantages, returns. Returns metrics. A critic-free batch whose
        advantages are all zero (``algorithm.skip_zero_adv``: update() skips it) gets its advantages only."""
        mb, ac = self.cfg.data.micro_batch_size, self.cfg.model.bf16_autocast
        mask = batch.loss_mask(self.algo.mask_retrieved).to(torch.float32)
        placement = self.algo.kl_placement
        metrics: dict[str, float] = {}
        self.policy.eval()
        if self.algo.name != "ppo":   # advantages from the scores alone: known before any forward pass
            if self.algo.name == "grpo":
                seq = ca.group_advantages(batch.scores, batch.group_ids, self.algo.norm_adv_by_std)
            elif self.algo.name == "rloo":
                seq = ca.rloo_advantages(batch.scores, batch.group_ids)
            else:
                seq = ca.reinforce_baseline_advantages(batch.scores)
            batch.advantages = ca.broadcast_to_tokens(seq, mask)
            if self._no_signal(batch):   # update() will skip this batch: its log-prob passes would be wasted
                return metrics
        if not self._on_policy() or placement == "reward":
            batch.old_logp, _ = forward_logprobs(self.policy, batch, mb, self.temperature, ac,
                                                 mode=self.eval_mode, chunk_size=self.chunk)
        if placement != "none":
            with self._ref_ctx():
                ref_model = self.policy if self.is_lora else self.ref
                batch.ref_logp, _ = forward_logprobs(ref_model, batch, mb, self.temperature, ac,
                                                     mode=self.eval_mode, chunk_size=self.chunk)
        if self.algo.name == "ppo":
            self.critic.eval()
            batch.old_values = forward_values(self.critic, batch, mb, ac)
            rewards = ca.outcome_token_rewards(batch.scores, mask)
            if placement == "reward":
                rewards, kl = ca.apply_kl_penalty(rewards, batch.old_logp, batch.ref_logp, mask,
                                                  self.kl_ctl.value, self.algo.kl_estimator)
                cur = float(D.all_sum((kl * mask).sum()) / D.all_sum(mask.sum()).clamp(min=1))
                metrics["actor/kl"] = cur
                metrics["actor/kl_coef"] = self.kl_ctl.value
                self.kl_ctl.update(cur, int(D.all_sum(torch.tensor(float(len(batch))))))
            adv, ret = ca.gae_advantages(rewards, batch.old_values, mask, self.algo.gamma, self.algo.lam)
            # before the update: how much of the returns' variance the values the advantages use explain
            metrics["critic/explained_var"] = float(ca.explained_variance(batch.old_values, ret, mask))
            if self.algo.whiten_advantages:
                adv = D.global_masked_whiten(adv, mask)
            batch.advantages, batch.returns = adv, ret
        if self.fsdp:   # no-grad passes leave the root units gathered; the training pass must start sharded
            reshard(m for m in (self.policy, self.ref, self.critic) if m is not None)
        return metrics

    # ------------------------------------------------------------------ update
    def _minibatches(self, n: int, gen: torch.Generator) -> list[Tensor]:
        k = self.cfg.data.batch_size // self.cfg.data.mini_batch_size
        order = torch.randperm(n, generator=gen) if k > 1 else torch.arange(n)
        return [c for c in torch.tensor_split(order, k) if len(c)]

    def _finish(self, opt, params, losses_finite: bool) -> tuple[bool, float]:
        if not self.fsdp:   # FSDP reduce-scattered (summed) the gradients in the backward pass
            D.all_reduce_grads(params)
        max_norm = self.cfg.optimizer.max_grad_norm
        gn = local_value(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf")))
        ok = losses_finite and bool(torch.isfinite(gn))
        ok = bool(D.all_sum(torch.tensor(float(not ok))) == 0)   # every rank skips together
        if ok:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return ok, float(gn)

    def update(self, batch: Batch, seed: int, step: int | None = None) -> dict[str, float]:
        """PPO epochs over ``batch`` (prepared). Returns averaged metrics.

        ``step``: the 0-based training step, for ``critic.warmup_steps`` (steps before it update only the
        critic); None = the number of earlier ``update`` calls of this learner."""
        step = self.updates if step is None else step
        self.updates += 1
        if self._no_signal(batch):
            return self._skip_step()
        gen = torch.Generator().manual_seed(seed)
        train_actor = self.critic is None or step >= self.cfg.critic.warmup_steps
        acc: dict[str, list[float]] = {}
        if train_actor:
            self.policy.train()
            for _ in range(self.algo.ppo_epochs):
                for idx in self._minibatches(len(batch), gen):
                    for k, v in self._actor_minibatch(batch.select(idx)).items():
                        acc.setdefault(k, []).append(v)
        if self.critic is not None:
            self.critic.train()
            epochs = self.cfg.critic.epochs or self.algo.ppo_epochs
            for _ in range(epochs):
                for idx in self._minibatches(len(batch), gen):
                    for k, v in self._critic_minibatch(batch.select(idx)).items():
                        acc.setdefault(k, []).append(v)
        if train_actor:
            self.sched.step()
        if self.csched is not None:
            self.csched.step()
        out = {k: sum(v) / len(v) for k, v in acc.items()}
        out["actor/lr"] = self.sched.get_last_lr()[0]
        out["actor/skipped_updates"] = float(self.skipped_updates)
        out["actor/skipped_zero_adv"] = 0.0
        out["critic/warmup"] = float(not train_actor)
        if self.algo.kl_placement == "loss":
            out["actor/kl"] = out.get("actor/kl_loss", 0.0)
            out["actor/kl_coef"] = self.kl_ctl.value
        return out

    def _norm(self, mbatch: Batch) -> Tensor:
        """The loss normaliser of a mini-batch: its policy tokens (or rows) over all ranks."""
        return D.all_sum(ca.agg_count(mbatch.loss_mask(self.algo.mask_retrieved), self.algo.loss_agg_mode))

    def _actor_minibatch(self, mbatch: Batch) -> dict[str, float]:
        """One optimizer step of the policy on a mini-batch (micro-batch accumulation); its metrics."""
        micro, ac = self.cfg.data.micro_batch_size, self.cfg.model.bf16_autocast
        norm = self._norm(mbatch)
        finite = True
        stats_sum: dict[str, float] = {}
        ent_den = 0.0   # policy tokens of this mini-batch (weights of the per-token means)
        for s in range(0, len(mbatch), micro):
            mb = mbatch.select(slice(s, s + micro)).to(self.device)
            with autocast_ctx(self.device, ac):
                logp, ent = response_logprobs(self.policy, mb, self.temperature, self.train_mode,
                                              self.chunk, entropy_grad=self.algo.entropy_coef > 0)
            loss, st = actor_loss(logp, ent, mb, self.algo, norm, self.kl_ctl.value)
            finite &= bool(torch.isfinite(loss))
            loss.backward()
            w = float(mb.loss_mask(self.algo.mask_retrieved).float().sum())
            ent_den += w
            for k, v in st.items():
                stats_sum[k] = stats_sum.get(k, 0.0) + float(v) * (1.0 if k in _SUMMED else w)
        ok, gn = self._finish(self.opt, [p for p in self.policy.parameters() if p.requires_grad], finite)
        self._count_skip(ok)
        tot = float(D.all_sum(torch.tensor(ent_den)))
        row = {k: float(D.all_sum(torch.tensor(v))) / (1.0 if k in _SUMMED else max(tot, 1.0))
               for k, v in stats_sum.items()}
        row["actor/grad_norm"] = gn
        return row

    def _critic_minibatch(self, mbatch: Batch) -> dict[str, float]:
        """One optimizer step of the critic on a mini-batch; its metrics."""
        micro, ac = self.cfg.data.micro_batch_size, self.cfg.model.bf16_autocast
        norm = self._norm(mbatch)
        finite = True
        vl_sum, clip_sum, den = 0.0, 0.0, 0.0
        for s in range(0, len(mbatch), micro):
            mb = mbatch.select(slice(s, s + micro)).to(self.device)
            m = mb.loss_mask(self.algo.mask_retrieved).float()
            with autocast_ctx(self.device, ac):
                v = self.critic(mb)
            vl, vclip = ca.value_loss(v, mb.old_values, mb.returns, m, self.algo.value_clip,
                                      self.algo.loss_agg_mode, norm)
            finite &= bool(torch.isfinite(vl))
            vl.backward()
            vl_sum += float(vl.detach())
            clip_sum += float(vclip) * float(m.sum())
            den += float(m.sum())
        ok, gn = self._finish(self.copt, list(self.critic.parameters()), finite)
        self._count_skip(ok)
        tot = float(D.all_sum(torch.tensor(den)))
        return {"critic/value_loss": float(D.all_sum(torch.tensor(vl_sum))),
                "critic/clipfrac": float(D.all_sum(torch.tensor(clip_sum))) / max(tot, 1.0),
                "critic/grad_norm": gn}

    def _no_signal(self, batch: Batch) -> bool:
        """True when ``algorithm.skip_zero_adv`` is on (critic-free algorithms only) and every
        policy token's advantage is zero on every rank."""
        if not self.algo.skip_zero_adv or self.algo.name == "ppo" or batch.advantages is None:
            return False
        mask = batch.loss_mask(self.algo.mask_retrieved).bool()
        nonzero = ((batch.advantages != 0) & mask).sum().to(torch.float32)
        return float(D.all_sum(nonzero)) == 0.0

    def _skip_step(self) -> dict[str, float]:
        """No learning signal: leave weights and optimizer state untouched; the LR schedule still
        advances so it stays aligned with the training step."""
        with warnings.catch_warnings():   # stepping the schedule without an optimizer step is intended here
            warnings.filterwarnings("ignore", message="Detected call of")
            self.sched.step()
        return {"actor/lr": self.sched.get_last_lr()[0], "actor/skipped_updates": float(self.skipped_updates),
                "actor/skipped_zero_adv": 1.0}

    def _count_skip(self, ok: bool) -> None:
        if ok:
            self.consecutive_skips = 0
            return
        self.skipped_updates += 1
        self.consecutive_skips += 1
        limit = self.cfg.guards.max_skipped_updates
        if self.consecutive_skips >= limit:
            raise FloatingPointError(
                f"{self.consecutive_skips} consecutive updates had non-finite loss or gradients; lower "
                "optimizer.actor_lr, use model.dtype=float32, or raise guards.max_skipped_updates")
