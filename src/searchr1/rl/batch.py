"""Trajectories -> padded tensors, and teacher-forced passes over the recorded ids.

Layout: each row is ``prompt + response`` laid out from position 0 and right-padded,
so any causal LM gives the same positions it saw while generating, without
``position_ids``. Response token ``j`` of row ``i`` is predicted by the logits at
``resp_index[i, j] = P_i - 1 + j``; the learner works on ``(B, R)`` response tensors.

A teacher-forced pass runs one of two paths, both through the model's own forward:
``"full"`` (one forward over prompt + response) or ``"shared-prompt"`` (each distinct prompt
once, the responses on its KV cache: ``rl/shared_prompt.py``). :func:`forward_mode` is the one
place that chooses; the learner calls it once per run and logs its choice.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from searchr1.models.signature import forward_params
from searchr1.rl.core_algos import chunked_logprobs_and_entropy, logprobs_and_entropy
from searchr1.rl.lm_head import hidden_forward, split_lm
from searchr1.rl.shared_prompt import prompt_groups, share_prompt_unsupported, shared_prompt_logits
from searchr1.rollout.types import Trajectory

FULL, SHARED = "full", "shared-prompt"
MODES = (FULL, SHARED)


@dataclass
class Batch:
    input_ids: Tensor        # (B, L) prompt + response, right-padded
    attention_mask: Tensor   # (B, L)
    resp_index: Tensor       # (B, R) position whose logits predict response token j
    responses: Tensor        # (B, R) response token ids (0 at padding)
    policy_mask: Tensor      # (B, R) 1 = sampled by the policy
    valid_mask: Tensor       # (B, R) 1 = a real response token (sampled or injected)
    scores: Tensor           # (B,) outcome reward
    group_ids: Tensor        # (B,)
    old_logp: Tensor | None = None    # (B, R)
    ref_logp: Tensor | None = None    # (B, R)
    old_values: Tensor | None = None  # (B, R)
    advantages: Tensor | None = None  # (B, R)
    returns: Tensor | None = None     # (B, R)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def loss_mask(self, mask_retrieved: bool) -> Tensor:
        """Tokens that carry loss: policy tokens (masking on) or all response tokens (ablation)."""
        return self.policy_mask if mask_retrieved else self.valid_mask

    def select(self, idx: Tensor | slice) -> Batch:
        """Rows ``idx``, trimmed to the longest sequence among them."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = None if v is None else v[idx]
        b = Batch(**out)
        L = int(b.attention_mask.sum(1).max()) if len(b) else 0
        R = int(b.valid_mask.sum(1).max()) if len(b) else 0
        trims = {"input_ids": b.input_ids[:, :max(L, 1)], "attention_mask": b.attention_mask[:, :max(L, 1)]}
        for name in ("resp_index", "responses", "policy_mask", "valid_mask", "old_logp", "ref_logp",
                     "old_values", "advantages", "returns"):
            v = getattr(b, name)
            if v is not None:
                trims[name] = v[:, :max(R, 1)]
        trims["resp_index"] = trims["resp_index"].clamp(max=max(L, 1) - 1)
        return replace(b, **trims)

    def to(self, device) -> Batch:
        return Batch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                        for f in fields(self)})


def collate(trajs: Sequence[Trajectory], scores: Sequence[float], pad_id: int = 0) -> Batch:
    """Pad trajectories into a :class:`Batch`. scores: (B,) outcome rewards."""
    if not trajs:
        raise ValueError("collate() needs at least one trajectory")
    B = len(trajs)
    L = max(len(t.prompt_ids) + len(t.response_ids) for t in trajs)
    R = max(max(len(t.response_ids) for t in trajs), 1)
    input_ids = torch.full((B, L), pad_id, dtype=torch.long)
    attn = torch.zeros(B, L, dtype=torch.long)
    resp = torch.zeros(B, R, dtype=torch.long)
    pmask = torch.zeros(B, R, dtype=torch.long)
    vmask = torch.zeros(B, R, dtype=torch.long)
    index = torch.zeros(B, R, dtype=torch.long)
    groups = []
    for i, t in enumerate(trajs):
        P, n = len(t.prompt_ids), len(t.response_ids)
        if P == 0:
            raise ValueError(f"trajectory {i} has an empty prompt; every row needs at least one prompt token")
        if len(t.response_mask) != n:
            raise ValueError(f"trajectory {i}: response_mask ({len(t.response_mask)}) and response_ids ({n}) differ")
        input_ids[i, :P + n] = torch.tensor(list(t.prompt_ids) + list(t.response_ids), dtype=torch.long)
        attn[i, :P + n] = 1
        resp[i, :n] = torch.tensor(t.response_ids, dtype=torch.long)
        pmask[i, :n] = torch.tensor(t.response_mask, dtype=torch.long)
        vmask[i, :n] = 1
        index[i] = (P - 1 + torch.arange(R)).clamp(max=L - 1)
        groups.append(i if t.group_id is None else t.group_id)
    return Batch(input_ids, attn, index, resp, pmask, vmask,
                 torch.tensor(list(scores), dtype=torch.float32), torch.tensor(groups, dtype=torch.long))


def is_right_padded(attention_mask: Tensor) -> bool:
    """True when every row of ``attention_mask`` (B, L) is ones followed by zeros (no holes, no left pad)."""
    m = attention_mask
    return bool((m[:, 0] == 1).all()) and bool((m[:, 1:] <= m[:, :-1]).all())


def forward_mode(model, share_prompt: bool, group_size: int, training: bool) -> tuple[str, str]:
    """The teacher-forced path for ``model``: ``(FULL | SHARED, why)``.

    share_prompt: ``model.share_prompt``; group_size: samples per question (prompts repeat only when
    it is > 1); training: the pass builds a graph for a backward pass (gradient checkpointing drops
    the KV cache then, :func:`~searchr1.rl.shared_prompt.share_prompt_unsupported`).
    """
    if not share_prompt:
        return FULL, "model.share_prompt=false"
    if group_size < 2:
        return FULL, "algorithm.group_size=1: no prompt repeats"
    why = share_prompt_unsupported(model, training)
    if why is not None:
        return FULL, why
    return SHARED, f"each distinct prompt once under its {group_size} samples"


def response_logits(model, batch: Batch, temperature: float = 1.0, mode: str = FULL) -> Tensor:
    """Teacher-forced logits at the response positions: (B, R, V), divided by ``temperature``.

    mode: :data:`FULL` or :data:`SHARED` (rows with the same prompt run it once,
    :func:`~searchr1.rl.shared_prompt.shared_prompt_logits`); :func:`forward_mode` chooses it.

    Two savings of the full path that leave the values unchanged (up to kernel rounding):

    * no attention mask when every row is right-padded: under causal attention a real token
      only sees earlier positions, which are all real, so the mask changes nothing for the
      positions we read — and without it attention runs the fused causal kernel instead of
      the masked one. Outputs at padding positions differ, but they are never read (their
      loss mask is 0).
    * ``logits_to_keep`` (when the model's ``forward`` takes it): only positions from the
      earliest response start on are projected to the vocabulary, not the prompts.
    """
    if mode not in MODES:
        raise ValueError(f"response_logits: mode={mode!r}; use one of {', '.join(MODES)}")
    if mode == SHARED:
        plen = batch.resp_index[:, 0] + 1                                  # (B,) prompt lengths
        groups = prompt_groups(batch.input_ids, plen)
        logits = shared_prompt_logits(model, batch.input_ids, plen, batch.responses, batch.valid_mask, groups)
    else:
        logits = _full_logits(model, batch)
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    return logits


def _full_logits(model, batch: Batch) -> Tensor:
    """One forward over prompt + response, gathered at the response positions: (B, R, V)."""
    L = batch.input_ids.shape[1]
    mask = None if is_right_padded(batch.attention_mask) else batch.attention_mask
    kwargs = {}
    if "logits_to_keep" in forward_params(model):
        kwargs["logits_to_keep"] = L - int(batch.resp_index[:, 0].min())
    out = model(input_ids=batch.input_ids, attention_mask=mask, use_cache=False, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out[0]
    B, K, V = logits.shape
    index = batch.resp_index - (L - K)                  # positions inside the kept window
    return logits.gather(1, index.unsqueeze(-1).expand(-1, -1, V))


def response_hidden(model, batch: Batch, mode: str = FULL) -> Tensor:
    """Teacher-forced last hidden states at the response positions: (B, R, H).

    Row ``[i, j]`` is what ``lm_head`` turns into :func:`response_logits`' row ``[i, j]`` (before the
    temperature); the model runs with ``logits_to_keep=1`` so no (B, L, V) logits are built. The model
    must pass :func:`~searchr1.rl.lm_head.hidden_unsupported`.
    """
    if mode not in MODES:
        raise ValueError(f"response_hidden: mode={mode!r}; use one of {', '.join(MODES)}")
    parts = split_lm(model)
    if isinstance(parts, str):
        raise TypeError(f"{parts}; set actor.logprob_chunk_size=0")
    trunk = parts[0]
    if mode == SHARED:
        plen = batch.resp_index[:, 0] + 1
        groups = prompt_groups(batch.input_ids, plen)
        return shared_prompt_logits(model, batch.input_ids, plen, batch.responses, batch.valid_mask, groups,
                                    trunk=trunk)
    mask = None if is_right_padded(batch.attention_mask) else batch.attention_mask
    h, _ = hidden_forward(model, trunk, input_ids=batch.input_ids, attention_mask=mask, use_cache=False)
    return h.gather(1, batch.resp_index.unsqueeze(-1).expand(-1, -1, h.shape[-1]))


def response_logprobs(model, batch: Batch, temperature: float = 1.0, mode: str = FULL, chunk_size: int = 0,
                      entropy: bool = True, entropy_grad: bool = False) -> tuple[Tensor, Tensor | None]:
    """log π(response token) (B, R) and the entropy (B, R) or None, float32, at ``temperature``.

    chunk_size 0: from :func:`response_logits` (B, R, V); > 0: from :func:`response_hidden` projected
    ``chunk_size`` positions at a time (:func:`~searchr1.rl.core_algos.chunked_logprobs_and_entropy`),
    same values without the (B, R, V) logits in the forward or the backward pass.
    """
    if chunk_size > 0:
        head = split_lm(model)[1]
        return chunked_logprobs_and_entropy(response_hidden(model, batch, mode), head, batch.responses,
                                            chunk_size, temperature, entropy, entropy_grad)
    logits = response_logits(model, batch, temperature, mode)
    return logprobs_and_entropy(logits, batch.responses, entropy, entropy_grad)


@torch.no_grad()
def forward_logprobs(model, batch: Batch, micro_batch_size: int, temperature: float = 1.0,
                     autocast: bool = False, with_entropy: bool = False,
                     mode: str = FULL, chunk_size: int = 0) -> tuple[Tensor, Tensor | None]:
    """log π(response token) for every row, in micro-batches: (B, R) float32 (+ entropy (B, R)).
    mode: the teacher-forced path (:func:`forward_mode`); chunk_size: see :func:`response_logprobs`."""
    B, R = batch.responses.shape
    logp = torch.zeros(B, R)
    ent = torch.zeros(B, R) if with_entropy else None
    device = next(model.parameters()).device
    for s in range(0, B, micro_batch_size):
        mb = batch.select(slice(s, s + micro_batch_size)).to(device)
        with autocast_ctx(device, autocast):
            lp, e = response_logprobs(model, mb, temperature, mode, chunk_size, entropy=with_entropy)
        r = mb.responses.shape[1]
        logp[s:s + micro_batch_size, :r] = lp.cpu()
        if ent is not None:
            ent[s:s + micro_batch_size, :r] = e.cpu()
    return logp * batch.valid_mask, ent


def autocast_ctx(device, enabled: bool):
    """bf16 autocast on the device's type (CPU or CUDA); a no-op context when disabled."""
    dtype_dev = torch.device(device).type
    return torch.autocast(device_type=dtype_dev, dtype=torch.bfloat16, enabled=enabled)
