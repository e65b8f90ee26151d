"""Llama-family decoders (Llama, Qwen2, Qwen3; SmolLM2 is a Llama) as plain functions of their own weights.

For small models on CPU a transformers forward is dominated not by arithmetic but by the framework
around it: the attention-mask builder, module dispatch, keyword plumbing, the six-op RMSNorm. The
two direct paths built on this file run the same math in the same order as the transformers SDPA
path, on the model's own parameters and submodules (embedding, rotary module, activation), with
nothing copied:

* ``rollout/backends/direct_decode.py``: a decoding step (one new token per row) or a prefill;
* ``rl/shared_prompt.py``: the teacher-forced training / reference pass over shared prompts.

One decoder layer, as both paths compute it::

    h = rms(x);  q, k, v = proj(h)  [q/k head norms: Qwen3];  rope(q, k)
    x = x + o_proj(sdpa(q, k, v, mask))          GQA without copying K/V
    x = x + down(act(gate(rms(x))) * up(rms(x)))

:func:`unsupported_reason` says why a model cannot take them (another architecture, wrapped
projections such as LoRA adapters or quantized layers, sliding-window layers, accelerate hooks,
attention dropout while training); callers then use the transformers forward, and say so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or hasattr(module, "_hf_hook"))


def unsupported_reason(model, training: bool = False) -> str | None:
    """None when the direct functions compute exactly what ``model``'s forward does; else why not.

    training: the pass runs with the model in training mode (attention dropout then matters).
    """
    name = type(model).__name__
    if name not in SUPPORTED:
        return f"{name} is not one of {', '.join(SUPPORTED)}"
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return f"{name} lacks the usual embed_tokens / layers / norm / rotary_emb modules"
    if any(_hooked(m) for m in model.modules()):
        return "the model has forward hooks (accelerate offloading / device_map, or user hooks)"
    if type(model.lm_head) is not nn.Linear:
        return f"lm_head is a {type(model.lm_head).__name__}, not a plain nn.Linear"
    for i, layer in enumerate(inner.layers):
        for part, projs in (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                            ("mlp", ("gate_proj", "up_proj", "down_proj"))):
            for proj in projs:
                kind = type(getattr(getattr(layer, part), proj))
                if kind is not nn.Linear:
                    return (f"layer {i} {part}.{proj} is a {kind.__name__} "
                            "(a LoRA adapter or quantized weights), not a plain nn.Linear")
        if getattr(layer.self_attn, "sliding_window", None) is not None:
            return f"layer {i} uses sliding-window attention"
        if training and getattr(layer.self_attn, "attention_dropout", 0.0):
            return f"layer {i} has attention dropout ({layer.self_attn.attention_dropout}) in training"
    return None


def rms(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """transformers' RMSNorm: normalise in fp32, cast back, scale by the weight (one op in fp32)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def rope(x: Tensor, cos: Tensor, sin_folded: Tensor) -> Tensor:
    """Rotary embedding of x (B, heads, T, D): ``x * cos + rotate_half(x) * sin`` as transformers computes it,
    with cos (B, 1, T, D) and ``sin_folded`` = sin with its first half negated (:func:`rotary`).

    rotate_half(x) = cat(-x2, x1) and roll(x, D/2) = cat(x2, x1), so rotate_half(x) * sin equals
    roll(x, D/2) * sin_folded exactly (-a * b = a * -b): one op instead of chunk, neg and cat.
    """
    return x * cos + x.roll(x.shape[-1] // 2, -1) * sin_folded


def rotary(rotary_emb: nn.Module, x: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
    """cos and folded sin (B, 1, T, D) for positions pos (B, T) from the model's rotary module (x: its dtype)."""
    cos, sin = rotary_emb(x, pos)
    half = sin.shape[-1] // 2
    return cos.unsqueeze(1), torch.cat((-sin[..., :half], sin[..., half:]), -1).unsqueeze(1)


class RotaryTable:
    """:func:`rotary` by table lookup: the model's rotary module runs once for positions 0..n-1 (n grows
    by doubling as needed), then each call is one embedding lookup instead of the module's ~10 ops per
    decoding step. Exact: every entry is the product inv_freq * position whatever else is in the batch.
    Rope types whose frequencies depend on the sequence length (dynamic, longrope) and per-layer rope
    types call the module every time."""

    STATIC = ("default", "linear", "llama3", "yarn")

    def __init__(self, rotary_emb: nn.Module):
        self.module = rotary_emb
        self.static = isinstance(getattr(rotary_emb, "rope_type", None), str) and rotary_emb.rope_type in self.STATIC
        self.table: Tensor | None = None          # (n, 2D): cos | folded sin

    def __call__(self, x: Tensor, pos: Tensor) -> tuple[Tensor, Tensor]:
        if not self.static:
            return rotary(self.module, x, pos)
        need = int(pos.max()) + 1
        t = self.table
        if t is None or t.shape[0] < need or t.dtype != x.dtype or t.device != x.device:
            n = 256
            while n < need:
                n *= 2
            cos, sin = rotary(self.module, x, torch.arange(n, device=x.device)[None])   # (1, 1, n, D)
            t = self.table = torch.cat((cos[0, 0], sin[0, 0]), -1)
        cs = F.embedding(pos, t).unsqueeze(1)                                       # (B, 1, T, 2D)
        D = t.shape[1] // 2
        return cs[..., :D], cs[..., D:]


def causal_mask(key_real: Tensor, new: int) -> Tensor:
    """Attention mask of the last ``new`` columns as queries: (B, 1, new, S) bool, True = attend.

    key_real: (B, S) bool, True = a real token. A query sees the real columns up to its own, and
    always itself, so a padding query is never left with nothing to attend to (some kernels would
    return NaN for it; its row is never read).
    """
    cols = torch.arange(key_real.shape[1], device=key_real.device)
    rows = cols[-new:, None]                                               # (new, 1) column of each query
    return ((key_real[:, None, :] & (cols <= rows)) | (cols == rows))[:, None]


class LayerWeights:
    """The tensors and settings of one decoder layer, read once per pass or session (module
    attribute lookups cost more than the arithmetic of a tiny model's decoding step)."""

    def __init__(self, layer: nn.Module):
        a, mlp = layer.self_attn, layer.mlp
        self.norm1 = (layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        self.norm2 = (layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
        self.q, self.k, self.v, self.o = ((p.weight, p.bias) for p in (a.q_proj, a.k_proj, a.v_proj, a.o_proj))
        self.qk_norm = ((a.q_norm.weight, a.q_norm.variance_epsilon), (a.k_norm.weight, a.k_norm.variance_epsilon)) \
            if hasattr(a, "q_norm") else None
        self.gate, self.up, self.down = ((p.weight, p.bias) for p in (mlp.gate_proj, mlp.up_proj, mlp.down_proj))
        self.act = mlp.act_fn
        self.head_dim, self.scaling = a.head_dim, a.scaling

    def heads(self, h: Tensor, which: str, cos: Tensor | None = None, sin: Tensor | None = None) -> Tensor:
        """Project h (B, T, H) to heads (B, heads, T, D): ``which`` in q / k / v; head norm (Qwen3) and
        rotary embedding for q and k (cos, sin: (B, 1, T, D) from :func:`rotary`, sin folded)."""
        B, T, _ = h.shape
        x = F.linear(h, *getattr(self, which)).view(B, T, -1, self.head_dim)
        if which != "v" and self.qk_norm is not None:
            x = rms(x, *self.qk_norm[0 if which == "q" else 1])
        x = x.transpose(1, 2)
        return x if which == "v" else rope(x, cos, sin)

    def attend(self, x: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
        """Residual attention output: x (B, T, H) + o_proj(sdpa(q, k, v)); q (B, heads, T, D), k/v (B, KV, S, D),
        mask (B, 1, T, S) bool (True = attend)."""
        B, T, _ = x.shape
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)
        return x + F.linear(o.transpose(1, 2).reshape(B, T, -1), *self.o)

    def finish(self, x: Tensor, h: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, mask: Tensor,
               only_last: bool = False) -> Tensor:
        """The layer once its keys and values are known: attention with the queries of h = rms(x), then
        the MLP. x, h (B, T, H); k, v (B, KV, S, D); cos, sin (B, 1, T, D); mask (B, 1, T, S).
        ``only_last``: run the query, attention and MLP at the last position only, returning (B, 1, H)
        (when the other positions are needed only for their keys and values)."""
        if only_last:
            x, h, cos, sin, mask = x[:, -1:], h[:, -1:], cos[:, :, -1:], sin[:, :, -1:], mask[:, :, -1:]
        return self.mlp(self.attend(x, self.heads(h, "q", cos, sin), k, v, mask))

    def mlp(self, x: Tensor) -> Tensor:
        """Residual gated MLP: x + down(act(gate(rms(x))) * up(rms(x))). x (B, T, H)."""
        h = rms(x, *self.norm2)
        return x + F.linear(self.act(F.linear(h, *self.gate)) * F.linear(h, *self.up), *self.down)
