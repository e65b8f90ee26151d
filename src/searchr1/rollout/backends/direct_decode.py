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

It reads the live parameters (nothing is copied or fused), so it follows the trainer's updates.
Measured with ``HFBackend`` (``benchmarks/bench_trainer.py`` models, 32 rows sampling 32 tokens, fp32,
one CPU thread, fastest of 12): 93 -> 65 ms on the 0.09M model, 451 -> 408 ms on the 3.2M one (its
matmuls dominate), the same sampled tokens. SmolLM2-135M-Instruct (real weights, 8 rows, greedy):
the same tokens at the same speed (28 tok/s): the gain is the overhead of small models.

:func:`unsupported_reason` says why a model cannot take this path (another architecture, wrapped
projections such as LoRA adapters or quantized layers, sliding-window layers, accelerate hooks);
the backend then uses the transformers forward, and says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.cache_utils import DynamicCache, DynamicLayer

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
        a, mlp = layer.self_attn, layer.mlp
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            if type(getattr(a, proj)) is not nn.Linear:
                return (f"layer {i} self_attn.{proj} is a {type(getattr(a, proj)).__name__} "
                        "(a LoRA adapter or quantized weights), not a plain nn.Linear")
        for proj in ("gate_proj", "up_proj", "down_proj"):
            if type(getattr(mlp, proj)) is not nn.Linear:
                return (f"layer {i} mlp.{proj} is a {type(getattr(mlp, proj)).__name__} "
                        "(a LoRA adapter or quantized weights), not a plain nn.Linear")
        if getattr(a, "sliding_window", None) is not None:
            return f"layer {i} uses sliding-window attention"
    return None


def cache_supported(cache) -> bool:
    """The step appends to plain dynamic cache layers (not offloaded, not sliding, not quantized)."""
    return (isinstance(cache, DynamicCache) and not getattr(cache, "offloading", False)
            and all(isinstance(la, DynamicLayer) and type(la).__name__ in ("DynamicLayer", "_ReservedLayer")
                    for la in cache.layers))


def _rms(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """transformers' RMSNorm: normalise in fp32, cast back, scale by the weight."""
    y = F.rms_norm(x.float(), (x.shape[-1],), eps=norm.variance_epsilon)
    return norm.weight * y.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class DirectDecodeStep:
    """``step(ids, mask, pos, cache) -> logits``: one new token per row through a supported model.

    ids, pos: (B, 1) token and position of each row's new token; mask: (B, T) 1 = real token,
    the new column included; cache: a DynamicCache holding the T - 1 earlier columns (appended
    to in place, as the transformers forward would). Returns next-token logits (B, V).
    """

    def __init__(self, model):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"direct decoding does not support this model: {reason}")
        self.model = model
        self.inner = model.model
        self.qk_norm = hasattr(self.inner.layers[0].self_attn, "q_norm")

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache) -> torch.Tensor:
        m, B = self.inner, ids.shape[0]
        x = m.embed_tokens(ids)                                             # (B, 1, H)
        cos, sin = m.rotary_emb(x, pos)                                     # (B, 1, D)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                       # (B, 1, 1, D)
        attn_mask = mask.bool()[:, None, None, :]                           # (B, 1, 1, T)
        for i, layer in enumerate(m.layers):
            a, mlp = layer.self_attn, layer.mlp
            h = _rms(x, layer.input_layernorm)
            q = F.linear(h, a.q_proj.weight, a.q_proj.bias).view(B, 1, -1, a.head_dim)
            k = F.linear(h, a.k_proj.weight, a.k_proj.bias).view(B, 1, -1, a.head_dim)
            v = F.linear(h, a.v_proj.weight, a.v_proj.bias).view(B, 1, -1, a.head_dim)
            if self.qk_norm:
                q, k = _rms(q, a.q_norm), _rms(k, a.k_norm)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, 1, D)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k, v = cache.layers[i].update(k, v)                              # (B, KV, T, D)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=a.scaling, enable_gqa=True)
            x = x + F.linear(o.transpose(1, 2).reshape(B, 1, -1), a.o_proj.weight, a.o_proj.bias)
            h = _rms(x, layer.post_attention_layernorm)
            gate = mlp.act_fn(F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias))
            x = x + F.linear(gate * F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias),
                             mlp.down_proj.weight, mlp.down_proj.bias)
        head = self.model.lm_head
        return F.linear(_rms(x, m.norm)[:, -1], head.weight, head.bias)
