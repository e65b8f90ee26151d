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


def rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding of x (B, heads, T, D) with cos, sin (B, 1, T, D) from the model's rotary module."""
    return x * cos + rotate_half(x) * sin


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
        rotary embedding for q and k (cos, sin: (B, 1, T, D))."""
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
