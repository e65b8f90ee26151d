"""Advantages, KL estimators and losses for PPO / GRPO — pure tensor functions.

Shapes: ``B`` rows (trajectories), ``T`` response tokens (right-padded). Every
token-level tensor is ``(B, T)`` and comes with ``mask`` ``(B, T)``: 1 where the
policy sampled the token, 0 where it was injected (prompt continuation,
``<information>`` blocks, corrective messages) or is padding.

Choices that differ from, or make precise, the Search-R1 paper:

* **Injected tokens are not actions.** GAE runs over the policy tokens only: for a
  policy token ``t`` the "next state value" is the value at the *next policy token*
  (the observation in between is part of the environment transition), and the
  recursion skips injected tokens entirely. Injected tokens get advantage 0 and
  return 0. With ``γ = λ = 1`` (the paper) this equals the unmasked recursion on the
  policy tokens; with ``γ < 1`` discounting counts policy tokens, not wall tokens.
* **GRPO std** is the unbiased sample std of the group (as ``torch.std``); a group of
  one gets advantage 0 (nothing to compare against) instead of NaN.
* **Loss aggregation** is an explicit argument; ``norm`` lets a caller normalise a
  micro-batch by the token / sequence count of the whole mini-batch (across
  processes), so gradient accumulation and data parallelism give exactly the
  gradient of one big batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
KL_KINDS = ("kl", "abs", "mse", "low_var_kl")


# ----------------------------------------------------------------------------- masks & stats
def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` where ``mask`` is 1. x, mask: same shape. 0 where the mask is empty."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over the masked entries (scalar)."""
    mean = masked_mean(x, mask)
    n = mask.to(x.dtype).sum()
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std over the masked entries; masked-out entries become 0. (B, T) -> (B, T)."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


# ----------------------------------------------------------------------------- advantages
def gae_advantages(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """GAE over the policy tokens of each row, skipping injected tokens.

    token_rewards, values, mask: (B, T). Returns (advantages, returns), both (B, T),
    zero where ``mask == 0``. The value after the last policy token is 0 (episode end).
    """
    B, T = mask.shape
    m = mask.bool()
    # compact the policy tokens of every row to the left, run plain GAE, scatter back
    pos = (m.cumsum(dim=1) - 1).clamp(min=0)                       # (B, T) slot of each policy token
    lengths = m.sum(dim=1)                                          # (B,)
    r_c = torch.zeros(B, T, dtype=values.dtype, device=values.device)
    v_c = torch.zeros_like(r_c)
    r_c.scatter_add_(1, pos, torch.where(m, token_rewards.to(values.dtype), 0.0))
    v_c.scatter_add_(1, pos, torch.where(m, values, 0.0))
    slot = torch.arange(T, device=mask.device).expand(B, T)
    valid = slot < lengths[:, None]                                 # (B, T) compacted mask
    adv_c = torch.zeros_like(r_c)
    last = torch.zeros(B, dtype=values.dtype, device=values.device)
    next_v = torch.zeros_like(last)
    for t in range(T - 1, -1, -1):
        ok = valid[:, t]
        delta = r_c[:, t] + gamma * next_v - v_c[:, t]
        last = torch.where(ok, delta + gamma * lam * last, last.new_zeros(()))
        next_v = torch.where(ok, v_c[:, t], next_v.new_zeros(()))
        adv_c[:, t] = last
    adv = torch.where(m, adv_c.gather(1, pos), 0.0)
    returns = torch.where(m, adv + values, 0.0)
    return adv, returns


def group_advantages(
    rewards: Tensor, group_ids: Tensor, norm_std: bool = True, eps: float = 1e-6
) -> Tensor:
    """GRPO advantages. rewards, group_ids: (B,). Returns (B,).

    ``(r - group mean) / (group std + eps)``; without ``norm_std`` just ``r - mean``
    (Dr. GRPO). Groups of one get 0.
    """
    rewards = rewards.float()
    _, inv = torch.unique(group_ids, return_inverse=True)
    G = int(inv.max()) + 1 if inv.numel() else 0
    count = rewards.new_zeros(G).index_add_(0, inv, torch.ones_like(rewards))
    mean = rewards.new_zeros(G).index_add_(0, inv, rewards) / count
    sq = rewards.new_zeros(G).index_add_(0, inv, (rewards - mean[inv]) ** 2)
    std = torch.sqrt(sq / (count - 1).clamp(min=1))
    adv = rewards - mean[inv]
    if norm_std:
        adv = adv / (std[inv] + eps)
    return torch.where(count[inv] > 1, adv, torch.zeros_like(adv))


def rloo_advantages(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """RLOO: ``r_i - mean of the other members of i's group``. (B,) -> (B,); groups of one get 0."""
    rewards = rewards.float()
    _, inv = torch.unique(group_ids, return_inverse=True)
    G = int(inv.max()) + 1 if inv.numel() else 0
    count = rewards.new_zeros(G).index_add_(0, inv, torch.ones_like(rewards))
    total = rewards.new_zeros(G).index_add_(0, inv, rewards)
    n = count[inv]
    loo_mean = (total[inv] - rewards) / (n - 1).clamp(min=1)
    return torch.where(n > 1, rewards - loo_mean, torch.zeros_like(rewards))


def reinforce_baseline_advantages(rewards: Tensor) -> Tensor:
    """REINFORCE with a batch-mean baseline: ``r - mean(r)``. (B,) -> (B,)."""
    rewards = rewards.float()
    return rewards - rewards.mean()


def broadcast_to_tokens(seq_adv: Tensor, mask: Tensor) -> Tensor:
    """Sequence advantages (B,) onto tokens (B, T), zero where ``mask == 0``."""
    return seq_adv[:, None].to(torch.float32) * mask.to(torch.float32)


def outcome_token_rewards(scores: Tensor, mask: Tensor) -> Tensor:
    """Place each row's outcome score (B,) on its last policy token. Returns (B, T)."""
    B, T = mask.shape
    idx = torch.arange(T, device=mask.device).expand(B, T)
    last = torch.where(mask.bool(), idx, -1).max(dim=1).values      # (B,) -1 when no policy token
    out = torch.zeros(B, T, dtype=torch.float32, device=mask.device)
    has = last >= 0
    out[has.nonzero(as_tuple=True)[0], last[has]] = scores[has].float()
    return out


# ----------------------------------------------------------------------------- KL
def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: str = "low_var_kl") -> Tensor:
    """Per-token KL(π || π_ref) estimate from log-probs of the sampled tokens. (B, T) -> (B, T).

    ``kl`` (k1) = logp − ref; ``abs`` = |logp − ref|; ``mse`` (k2) = ½(logp − ref)²;
    ``low_var_kl`` (k3) = exp(ref − logp) − (ref − logp) − 1, log-ratio clamped to
    ±20 and the estimate clamped to [−10, 10] for stability.
    """
    diff = logp - ref_logp
    if kind == "kl":
        return diff
    if kind == "abs":
        return diff.abs()
    if kind == "mse":
        return 0.5 * diff.square()
    if kind == "low_var_kl":
        r = (-diff).clamp(-20.0, 20.0)
        return (torch.exp(r) - r - 1.0).clamp(-10.0, 10.0)
    raise ValueError(f"unknown KL estimator {kind!r}; use one of {', '.join(KL_KINDS)}")


def apply_kl_penalty(
    token_rewards: Tensor, logp: Tensor, ref_logp: Tensor, mask: Tensor, coef: float, kind: str = "kl"
) -> tuple[Tensor, Tensor]:
    """PPO reward shaping: ``r_t − coef · KL_t`` at policy tokens. All (B, T).

    Returns (shaped rewards, per-token KL masked to policy tokens).
    """
    kl = kl_penalty(logp, ref_logp, kind) * mask.to(logp.dtype)
    return token_rewards - coef * kl, kl


class FixedKLController:
    """Constant KL coefficient."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Proportional controller (Ziegler et al., 2019) steering the KL toward ``target``.

    ``value *= 1 + clip(kl / target − 1, −0.2, 0.2) · n_steps / horizon``.
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError("adaptive KL needs target > 0 and horizon > 0; set algorithm.kl_target / kl_horizon")
        self.value, self.target, self.horizon = float(init_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        err = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + err * n_steps / self.horizon


# ----------------------------------------------------------------------------- losses
def aggregate_loss(loss_mat: Tensor, mask: Tensor, mode: str = "token-mean", norm: float | Tensor | None = None) -> Tensor:
    """Reduce a (B, T) loss to a scalar over the masked tokens.

    ``token-mean``: Σ loss·mask / Σ mask. ``seq-mean-token-mean``: mean over rows of the
    row's token mean. ``seq-mean-token-sum``: mean over rows of the row's token sum.
    Rows without any masked token are left out of the seq-means. ``norm`` replaces the
    denominator (token count for ``token-mean``, row count otherwise), e.g. the count
    of the whole mini-batch when this is one micro-batch of it.
    """
    m = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        total, count = (loss_mat * m).sum(), m.sum()
    elif mode in ("seq-mean-token-mean", "seq-mean-token-sum"):
        per_tok = m.sum(dim=1)
        row = (loss_mat * m).sum(dim=1)
        if mode == "seq-mean-token-mean":
            row = row / per_tok.clamp(min=1.0)
        total, count = row.sum(), (per_tok > 0).to(loss_mat.dtype).sum()
    else:
        raise ValueError(f"unknown loss aggregation {mode!r}; use one of {', '.join(AGG_MODES)}")
    denom = count if norm is None else torch.as_tensor(norm, dtype=loss_mat.dtype, device=loss_mat.device)
    return total / denom.clamp(min=1.0)


def agg_count(mask: Tensor, mode: str) -> Tensor:
    """The denominator ``aggregate_loss`` uses for ``mask`` (B, T) under ``mode`` (scalar)."""
    m = mask.float()
    return m.sum() if mode == "token-mean" else (m.sum(dim=1) > 0).float().sum()


@dataclass
class PolicyLossStats:
    clipfrac: Tensor      # share of policy tokens where the clip was active
    approx_kl: Tensor     # mean of ½(logp − old)² (k2 to the behaviour policy)
    dual_clipfrac: Tensor


def ppo_policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    dual_clip_c: float | None = None,
    agg_mode: str = "token-mean",
    norm: float | Tensor | None = None,
) -> tuple[Tensor, PolicyLossStats]:
    """Clipped surrogate. logp, old_logp, advantages, mask: (B, T). Returns (scalar loss, stats).

    ``max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε_high))`` per token; with ``dual_clip_c`` (> 1) the
    loss of negative-advantage tokens is further capped at ``−A·c`` (Ye et al., 2020).
    """
    hi = clip_eps if clip_eps_high is None else clip_eps_high
    log_ratio = (logp - old_logp).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * ratio.clamp(1.0 - clip_eps, 1.0 + hi)
    pg = torch.maximum(pg1, pg2)
    clipped = (pg2 > pg1).float()
    dual = torch.zeros_like(pg)
    if dual_clip_c is not None:
        pg3 = -advantages * dual_clip_c
        capped = torch.minimum(pg, pg3)
        use = advantages < 0
        dual = (use & (pg3 < pg)).float()
        pg = torch.where(use, capped, pg)
    loss = aggregate_loss(pg, mask, agg_mode, norm)
    with torch.no_grad():
        stats = PolicyLossStats(
            clipfrac=masked_mean(clipped, mask),
            approx_kl=masked_mean(0.5 * log_ratio.square(), mask),
            dual_clipfrac=masked_mean(dual, mask),
        )
    return loss, stats


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_range: float | None = 0.5,
    agg_mode: str = "token-mean",
    norm: float | Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Clipped value loss ``½·max((V − R)², (V_clip − R)²)``, V_clip = old + clip(V − old, ±c).

    values, old_values, returns, mask: (B, T). Returns (scalar loss, clip fraction).
    ``clip_range=None`` disables clipping.
    """
    err = (values - returns).square()
    if clip_range is None:
        per_tok, clipfrac = err, torch.zeros((), device=values.device)
    else:
        v_clip = old_values + (values - old_values).clamp(-clip_range, clip_range)
        err_c = (v_clip - returns).square()
        per_tok = torch.maximum(err, err_c)
        clipfrac = masked_mean((err_c > err).float(), mask).detach()
    return 0.5 * aggregate_loss(per_tok, mask, agg_mode, norm), clipfrac


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the categorical distribution per position. (B, T, V) -> (B, T)."""
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1)
    p = torch.softmax(logits, dim=-1)
    return logz - (p * logits).sum(dim=-1)


def logprobs_from_logits(logits: Tensor, tokens: Tensor) -> Tensor:
    """log π(token) per position. logits (B, T, V), tokens (B, T) -> (B, T), in float32."""
    logits = logits.float()
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def logprobs_and_entropy(logits: Tensor, tokens: Tensor, entropy: bool = True,
                         entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
    """log π(token) and the entropy per position from one log-normaliser, in float32.

    logits (B, T, V), tokens (B, T) -> logp (B, T), entropy (B, T) or None. Same values as
    ``logprobs_from_logits`` and ``entropy_from_logits``, but ``logsumexp`` runs once and
    no (B, T, V) log-softmax is kept for the backward pass: only the chosen token's logit and
    the normaliser carry gradient. The entropy is built without autograd unless
    ``entropy_grad`` (needed only when it is a loss term), so logging it costs one extra
    pass over the logits and no backward memory.
    """
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1)                                   # (B, T)
    logp = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logz
    if not entropy:
        return logp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        ent = logz - (torch.exp(logits - logz.unsqueeze(-1)) * logits).sum(dim=-1)
    return logp, ent


def chunked_logprobs_and_entropy(hidden: Tensor, head, tokens: Tensor, chunk_size: int,
                                 temperature: float = 1.0, entropy: bool = True,
                                 entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
    """``logprobs_and_entropy(head(hidden) / temperature, tokens)`` without the (B, T, V) logits.

    hidden (B, T, H) last hidden states, tokens (B, T) -> logp (B, T), entropy (B, T) or None, float32.
    head: the output projection (a module or callable (N, H) -> (N, V): tied, biased or LoRA-wrapped).
    The B·T positions are projected ``chunk_size`` at a time; under autograd each chunk runs in
    ``torch.utils.checkpoint`` so the backward pass recomputes one chunk's logits at a time instead
    of keeping all of them: peak memory O(chunk_size·V) instead of O(B·T·V), same values and gradients.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: use a positive number of positions per chunk")
    B, T, H = hidden.shape
    if B * T == 0:
        empty = hidden.new_zeros(B, T, dtype=torch.float32)
        return empty, (empty.clone() if entropy else None)
    flat_h, flat_t = hidden.reshape(B * T, H), tokens.reshape(B * T)
    scale = temperature not in (0.0, 1.0)

    def piece(h: Tensor, t: Tensor) -> tuple[Tensor, ...]:
        logits = head(h)
        if scale:
            logits = logits / temperature
        lp, ent = logprobs_and_entropy(logits, t, entropy, entropy_grad)
        return (lp,) if ent is None else (lp, ent)

    grad = torch.is_grad_enabled() and (hidden.requires_grad or any(
        p.requires_grad for p in getattr(head, "parameters", lambda: [])()))
    outs = []
    for s in range(0, B * T, chunk_size):
        args = (flat_h[s:s + chunk_size], flat_t[s:s + chunk_size])
        outs.append(torch.utils.checkpoint.checkpoint(piece, *args, use_reentrant=False) if grad else piece(*args))
    logp = torch.cat([o[0] for o in outs]).view(B, T)
    ent = torch.cat([o[1] for o in outs]).view(B, T) if entropy else None
    return logp, ent


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """1 − Var(R − V) / Var(R) over the masked tokens (scalar); NaN-free (0 when Var(R) = 0)."""
    var_r = masked_var(returns, mask)
    if var_r <= 0:
        return torch.zeros(())
    return 1.0 - masked_var(returns - values, mask) / var_r
