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

``direct=True`` (Llama, Qwen2, Qwen3 — ``models/llama_direct.py`` says which models qualify)
runs the same two passes as plain functions of the model's weights instead of two transformers
forwards, layer by layer: the prompt rows (U) and then the response rows (B) on top of the
gathered prompt K/V, with the masks built once. The same math (values equal to float rounding,
``tests/rl/test_shared_prompt.py``), less framework overhead per call, and one saving the module
stack cannot make: in the last layer the prompt positions need only their keys and values (for
the responses' attention) — their attention output and MLP feed nothing but the last position's
logits, so the last layer runs the query, attention and MLP at that position only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from searchr1.models import llama_direct as direct_fn
from searchr1.models.signature import cache_kwarg, forward_params


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


def _run(model, **kwargs):
    out = model(use_cache=True, **kwargs)
    logits = out.logits if hasattr(out, "logits") else out[0]
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    return logits, cache


def shared_prompt_logits(model, input_ids: Tensor, prompt_len: Tensor, responses: Tensor, valid_mask: Tensor,
                         groups: tuple[Tensor, Tensor] | None = None, direct: bool = False) -> Tensor:
    """Teacher-forced logits of every response token, each distinct prompt run once: (B, R, V).

    input_ids: (B, L) prompt + response from position 0; prompt_len: (B,);
    responses, valid_mask: (B, R) response ids and 1 = real response token; groups:
    :func:`prompt_groups` of the batch when the caller has it already. Entry ``[i, j]``
    equals the logits a full forward over row i gives at position ``prompt_len[i] - 1 + j``
    (the distribution of response token j). Padding entries (valid_mask 0) are unspecified.
    direct: run :func:`direct_logits` (the caller checks ``llama_direct.unsupported_reason`` once).
    """
    kw = None if direct else cache_kwarg(model)
    if kw is None and not direct:
        raise TypeError(f"{type(model).__name__}.forward takes no KV cache; use the plain forward "
                        "(model.share_prompt=false)")
    first, inv = groups if groups is not None else prompt_groups(input_ids, prompt_len)
    dev = input_ids.device
    first, inv = first.to(dev), inv.to(dev)
    p_ids, p_mask, p_pos = left_pad_prompts(input_ids.index_select(0, first), prompt_len.index_select(0, first))
    R = responses.shape[1]
    pos = prompt_len[:, None].to(dev) + torch.arange(R - 1, device=dev)[None, :]     # (B, R-1)
    if direct:
        return direct_logits(model, p_ids, p_mask, p_pos, inv, responses[:, :R - 1], valid_mask[:, :R - 1], pos)
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in forward_params(model) else {}
    head, cache = _run(model, input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos, **kwargs)
    if cache is None or cache.get_seq_length() != p_ids.shape[1]:
        raise RuntimeError(f"{type(model).__name__} returned no KV cache of the prompt with use_cache=True; "
                           "set model.share_prompt=false")
    head = head[:, -1:].index_select(0, inv)                        # (B, 1, V) predicts response token 0
    if R == 1:
        return head
    cache.batch_select_indices(inv)
    mask = torch.cat([p_mask.index_select(0, inv), valid_mask[:, :R - 1].to(p_mask.dtype)], dim=1)
    body, _ = _run(model, input_ids=responses[:, :R - 1], attention_mask=mask, position_ids=pos,
                   **{kw: cache})
    return torch.cat([head, body], dim=1)


def direct_logits(model, p_ids: Tensor, p_mask: Tensor, p_pos: Tensor, inv: Tensor, r_ids: Tensor,
                  r_valid: Tensor, r_pos: Tensor) -> Tensor:
    """:func:`shared_prompt_logits` of a Llama-family model as plain functions of its weights: (B, R, V).

    p_ids, p_mask, p_pos: (U, P) left-padded distinct prompts (:func:`left_pad_prompts`); inv: (B,)
    the prompt of each row; r_ids, r_valid, r_pos: (B, R-1) the responses fed as inputs (all but
    the last token), 1 = real token, their positions. Returns the logits of response tokens
    0..R-1: the prompt's last position, then every fed response position.
    """
    if type(model).__name__ not in direct_fn.SUPPORTED:
        raise TypeError(f"direct forward: {type(model).__name__} is not one of {', '.join(direct_fn.SUPPORTED)}; "
                        "set model.direct_forward=false")
    inner = model.model
    layers = [direct_fn.LayerWeights(layer) for layer in inner.layers]
    (U, P), (B, Rm) = p_ids.shape, r_ids.shape
    real = p_mask.bool()                                                            # (U, P) key is a prompt token
    p_attn = direct_fn.causal_mask(real, P)                                         # (U, 1, P, P)
    xp = inner.embed_tokens(p_ids)                                                  # (U, P, H)
    cp, sp = direct_fn.rotary(inner.rotary_emb, xp, p_pos)                         # (U, 1, P, D)
    if Rm:
        xr = inner.embed_tokens(r_ids)                                              # (B, Rm, H)
        cr, sr = direct_fn.rotary(inner.rotary_emb, xr, r_pos)
        # each response query sees its prompt's real tokens and its own response up to itself
        r_attn = direct_fn.causal_mask(torch.cat([real.index_select(0, inv), r_valid.bool()], 1), Rm)
    last = len(layers) - 1
    for i, la in enumerate(layers):
        h = direct_fn.rms(xp, *la.norm1)
        kp, vp = la.heads(h, "k", cp, sp), la.heads(h, "v")                          # (U, KV, P, D)
        # the last layer: only the prompt's last position is read (it predicts response token 0)
        xp = la.finish(xp, h, kp, vp, cp, sp, p_attn, only_last=i == last)
        if Rm:
            h = direct_fn.rms(xr, *la.norm1)
            k = torch.cat([kp.index_select(0, inv), la.heads(h, "k", cr, sr)], 2)    # (B, KV, P + Rm, D)
            v = torch.cat([vp.index_select(0, inv), la.heads(h, "v")], 2)
            xr = la.finish(xr, h, k, v, cr, sr, r_attn)
    x = xp[:, -1:].index_select(0, inv)                                             # (B, 1, H)
    if Rm:
        x = torch.cat([x, xr], 1)
    return F.linear(direct_fn.rms(x, inner.norm.weight, inner.norm.variance_epsilon), model.lm_head.weight,
                    model.lm_head.bias)
