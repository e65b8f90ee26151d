"""Teacher-forced logits with each distinct prompt run once (GRPO groups share their prompt).

The G samples of a GRPO question carry the same prompt, so a plain forward over
``prompt + response`` computes the prompt G times. Here the distinct prompts run once
(left-padded, ``U`` rows) with a KV cache; the cache rows are then gathered to the ``B``
batch rows (``index_select``, differentiable: each row's gradient flows back into the one
prompt forward) and the responses run on top of it::

    prompts (U, Pmax) --forward, cache--> K/V (U, ...) --gather inv--> K/V (B, ...)
    responses[:, :-1] (B, R-1) --forward on the gathered cache--> logits (B, R-1, V)
    logits of response token 0 = logits at the prompt's last position, gathered the same way

Same values as the full-sequence forward (up to float rounding: masked vs causal attention
kernels, different matmul blocking); see ``tests/rl/test_shared_prompt.py``.

Needs a causal LM whose ``forward`` takes ``position_ids`` and a KV cache (``cache`` or
``past_key_values``) and returns it — every transformers decoder does. Models without
those, and models with gradient checkpointing on (transformers drops the cache in
checkpointed training), use the plain forward: :func:`share_prompt_unsupported` says why.
"""
from __future__ import annotations

import torch
from torch import Tensor

from searchr1.models.signature import cache_kwarg, forward_params
from searchr1.rl.lm_head import hidden_forward


def share_prompt_unsupported(model, training: bool = True) -> str | None:
    """None when :func:`shared_prompt_logits` can run ``model``; otherwise the reason it cannot.

    training: the pass builds a graph for a backward pass (gradient checkpointing matters then only).
    """
    params = forward_params(model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if cache_kwarg(model) is None:
        return f"{type(base).__name__}.forward takes no KV cache (`cache` / `past_key_values`)"
    if "position_ids" not in params:
        return f"{type(base).__name__}.forward takes no `position_ids`"
    checkpointing = any(getattr(m, "gradient_checkpointing", False) is True for m in base.modules())
    if training and checkpointing:
        return "gradient checkpointing is on (transformers drops the KV cache in checkpointed training)"
    return None


def prompt_groups(input_ids: Tensor, prompt_len: Tensor) -> tuple[Tensor, Tensor]:
    """Rows whose prompts are the same token ids.

    input_ids: (B, L) rows laid out from position 0; prompt_len: (B,) prompt length of each row.
    Returns ``first`` (U,): a row holding each distinct prompt, in order of first appearance,
    and ``inv`` (B,): the distinct prompt of each row (``first[inv[i]]`` has row i's prompt).
    """
    seen: dict[tuple[int, ...], int] = {}
    first, inv = [], []
    for i, (row, n) in enumerate(zip(input_ids.tolist(), prompt_len.tolist())):
        key = tuple(row[:n])
        if key not in seen:
            seen[key] = len(first)
            first.append(i)
        inv.append(seen[key])
    return torch.tensor(first, dtype=torch.long), torch.tensor(inv, dtype=torch.long)


def left_pad_prompts(input_ids: Tensor, prompt_len: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Move each row's prompt to the right end of a (U, Pmax) block.

    input_ids: (U, L) prompt at positions [0, prompt_len); prompt_len: (U,).
    Returns ids (U, Pmax) (0 at padding), mask (U, Pmax) (1 = prompt token) and
    position ids (U, Pmax) (0 .. prompt_len-1 on the prompt, 0 at padding).
    """
    pmax = int(prompt_len.max())
    col = torch.arange(pmax, device=input_ids.device)
    src = col[None, :] - (pmax - prompt_len[:, None])              # (U, Pmax) source column, < 0 = padding
    real = src >= 0
    src = src.clamp(min=0)
    ids = torch.where(real, input_ids.gather(1, src), torch.zeros_like(src))
    return ids, real.long(), src


def _run(model, trunk=None, **kwargs):
    """(logits, cache) of ``model(use_cache=True, **kwargs)``; with ``trunk`` the trunk's last hidden
    state (B, L, H) in place of the logits (only one position is projected to the vocabulary then)."""
    if trunk is not None:
        out_h, out = hidden_forward(model, trunk, use_cache=True, **kwargs)
    else:
        out = model(use_cache=True, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out[0]
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    return (out_h if trunk is not None else logits), cache


def shared_prompt_logits(model, input_ids: Tensor, prompt_len: Tensor, responses: Tensor, valid_mask: Tensor,
                         groups: tuple[Tensor, Tensor] | None = None, trunk=None) -> Tensor:
    """Teacher-forced logits of every response token, each distinct prompt run once: (B, R, V).

    input_ids: (B, L) prompt + response from position 0; prompt_len: (B,);
    responses, valid_mask: (B, R) response ids and 1 = real response token; groups:
    :func:`prompt_groups` of the batch when the caller has it already. Entry ``[i, j]``
    equals the logits a full forward over row i gives at position ``prompt_len[i] - 1 + j``
    (the distribution of response token j). Padding entries (valid_mask 0) are unspecified.
    trunk: :func:`~searchr1.rl.lm_head.split_lm`'s trunk to return its last hidden states (B, R, H)
    at those positions instead of the logits.
    """
    kw = cache_kwarg(model)
    if kw is None:
        raise TypeError(f"{type(model).__name__}.forward takes no KV cache; use the plain forward "
                        "(model.share_prompt=false)")
    first, inv = groups if groups is not None else prompt_groups(input_ids, prompt_len)
    dev = input_ids.device
    first, inv = first.to(dev), inv.to(dev)
    p_ids, p_mask, p_pos = left_pad_prompts(input_ids.index_select(0, first), prompt_len.index_select(0, first))
    R = responses.shape[1]
    pos = prompt_len[:, None].to(dev) + torch.arange(R - 1, device=dev)[None, :]     # (B, R-1)
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in forward_params(model) and trunk is None else {}
    head, cache = _run(model, trunk, input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos, **kwargs)
    if cache is None or cache.get_seq_length() != p_ids.shape[1]:
        raise RuntimeError(f"{type(model).__name__} returned no KV cache of the prompt with use_cache=True; "
                           "set model.share_prompt=false")
    head = head[:, -1:].index_select(0, inv)                        # (B, 1, V) predicts response token 0
    if R == 1:
        return head
    cache.batch_select_indices(inv)
    mask = torch.cat([p_mask.index_select(0, inv), valid_mask[:, :R - 1].to(p_mask.dtype)], dim=1)
    body, _ = _run(model, trunk, input_ids=responses[:, :R - 1], attention_mask=mask, position_ids=pos,
                   **{kw: cache})
    return torch.cat([head, body], dim=1)

