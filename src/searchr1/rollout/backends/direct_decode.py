"""One decoding step of a Llama-family decoder (Llama, Qwen2, Qwen3; SmolLM2 is a Llama) run
directly on the model's own weights and submodules, without the transformers module stack.

Decoding feeds one token per row per call. For small models on CPU that call is dominated not by
arithmetic but by the framework around it: the attention-mask builder, module dispatch, keyword
plumbing, the six-op RMSNorm. This step does the same math in the same order as the transformers
SDPA path, for one new token per row::

    x = embed(ids)                                          (B, 1, H)
    cos, sin = model.rotary_emb(x, pos)                     the model's own rotary module
    per layer:  h = rms(x);  q, k, v = proj(h)  [q/k head norms: Qwen3];  rope(q, k)
                k, v = cache.update(k, v)                   (B, KV, T, D)
                x = x + o_proj(sdpa(q, k, v, mask))         GQA without copying K/V
                x = x + down(act(gate(rms(x))) * up(rms(x)))
    logits = lm_head(rms(x))                                (B, V)

It holds references to the live parameters (nothing is copied or fused; re-read at every session),
so it follows the trainer's updates. Measured with ``HFBackend`` (``benchmarks/bench_trainer.py``
models, 32 rows sampling 32 tokens, fp32, one CPU thread, fastest of 12, two runs): 1.60-1.66x
faster on the 0.09M model (135 -> 84 ms), 1.17-1.19x on the 3.2M one (410 -> 349 ms; its matmuls
dominate), the same sampled tokens. SmolLM2-135M-Instruct (real weights, 8 rows, greedy): the same
tokens at the same speed (28 tok/s) — the gain is the framework overhead of small models.

:func:`unsupported_reason` says why a model cannot take this path (another architecture, wrapped
projections such as LoRA adapters or quantized layers, sliding-window layers, accelerate hooks);
the backend then uses the transformers forward, and says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or hasattr(module, "_hf_hook"))


def unsupported_reason(model) -> str | None:
    """None when :class:`DirectDecodeStep` computes exactly what ``model``'s forward does; else why not."""
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
    return None


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' RMSNorm: normalise in fp32, cast back, scale by the weight (one op in fp32)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class _Layer:
    """The tensors and settings of one decoder layer, read once per session (module attribute
    lookups cost more than the arithmetic of a tiny model's decoding step)."""

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


class DirectDecodeStep:
    """``step(ids, mask, pos, cache) -> logits``: one new token per row through a supported model.

    ids, pos: (B, 1) token and position of each row's new token; mask: (B, T) 1 = real token,
    the new column included; cache: a DynamicCache of plain dynamic layers (not offloaded, sliding
    or quantized) holding the T - 1 earlier columns, appended to as the transformers forward would.
    Returns next-token logits (B, V).

    The step holds references to the model's parameters (updated in place by an optimizer, so
    always current); call :meth:`refresh` after replacing parameter objects (``HFBackend`` does
    at every ``open``).
    """

    def __init__(self, model):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"direct decoding does not support this model: {reason}")
        self.model = model
        self.inner = model.model
        self.refresh()

    def refresh(self) -> None:
        """Re-read the parameter references from the model."""
        self.layers = [_Layer(layer) for layer in self.inner.layers]
        self.norm = (self.inner.norm.weight, self.inner.norm.variance_epsilon)
        self.head = (self.model.lm_head.weight, self.model.lm_head.bias)

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache) -> torch.Tensor:
        B = ids.shape[0]
        x = self.inner.embed_tokens(ids)                                    # (B, 1, H)
        cos, sin = self.inner.rotary_emb(x, pos)                            # (B, 1, D)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                       # (B, 1, 1, D)
        attn_mask = mask.bool()[:, None, None, :]                           # (B, 1, 1, T)
        for i, la in enumerate(self.layers):
            h = _rms(x, *la.norm1)
            q = F.linear(h, *la.q).view(B, 1, -1, la.head_dim)
            k = F.linear(h, *la.k).view(B, 1, -1, la.head_dim)
            v = F.linear(h, *la.v).view(B, 1, -1, la.head_dim)
            if la.qk_norm is not None:
                q, k = _rms(q, *la.qk_norm[0]), _rms(k, *la.qk_norm[1])
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, 1, D)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k, v = cache.layers[i].update(k, v)                              # (B, KV, T, D)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=la.scaling, enable_gqa=True)
            x = x + F.linear(o.transpose(1, 2).reshape(B, 1, -1), *la.o)
            h = _rms(x, *la.norm2)
            x = x + F.linear(la.act(F.linear(h, *la.gate)) * F.linear(h, *la.up), *la.down)
        return F.linear(_rms(x, *self.norm)[:, -1], *self.head)
