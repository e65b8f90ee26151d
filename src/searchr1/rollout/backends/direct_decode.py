"""One decoding step (or prefill) of a Llama-family decoder (Llama, Qwen2, Qwen3; SmolLM2 is a
Llama) run directly on the model's own weights and submodules, without the transformers module
stack (the shared pieces live in ``searchr1/models/llama_direct.py``).

Decoding feeds one token per row per call. For small models on CPU that call is dominated not by
arithmetic but by the framework around it: the attention-mask builder, module dispatch, keyword
plumbing, the six-op RMSNorm. This step does the same math in the same order as the transformers
SDPA path; for one new token per row::

    x = embed(ids)                                          (B, 1, H)
    cos, sin = rotary table(pos)                            the model's own rotary module, run once
    per layer:  q, k, v = heads(rms(x))                     (B, heads, 1, D), rotary on q and k
                k, v = cache.update(k, v)                   (B, KV, T, D)
                x = x + o_proj(sdpa(q, k, v, mask))         GQA without copying K/V
                x = x + down(act(gate(rms(x))) * up(rms(x)))
    logits = lm_head(rms(x))                                (B, V)

A prefill (T > 1 new tokens per row: prompts, appended observations) runs the same layers with a
mask causal within the new columns, and its last layer runs the query, attention and MLP at the
last column only (the other columns need only their keys and values).

It holds references to the live parameters (nothing is copied or fused; re-read at every session),
so it follows the trainer's updates. Measured with ``HFBackend`` (``benchmarks/bench_trainer.py``
models, 32 rows sampling 32 tokens, fp32, one CPU thread, fastest of 12, two runs): 1.60-1.66x
faster on the 0.09M model (135 -> 84 ms), 1.17-1.19x on the 3.2M one (410 -> 349 ms; its matmuls
dominate), the same sampled tokens. SmolLM2-135M-Instruct (real weights, 8 rows, greedy): the same
tokens at the same speed (28 tok/s) — the gain is the framework overhead of small models; with
the prefill on the direct path too, two greedy turns of 8 rows with appended observations give
the same tokens as the transformers forward.

:func:`unsupported_reason` says why a model cannot take this path (another architecture, wrapped
projections such as LoRA adapters or quantized layers, sliding-window layers, accelerate hooks);
the backend then uses the transformers forward, and says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from searchr1.models.llama_direct import SUPPORTED, LayerWeights, RotaryTable, causal_mask, rms, unsupported_reason

__all__ = ["SUPPORTED", "DirectDecodeStep", "unsupported_reason"]


class DirectDecodeStep:
    """``step(ids, mask, pos, cache) -> logits``: new tokens per row through a supported model.

    ids, pos: (B, T) the new tokens and their positions (T = 1 when decoding; T > 1 for a prefill
    of prompts or appended observations, left-padded); mask: (B, S) 1 = real token, the T new
    columns last; cache: a DynamicCache of plain dynamic layers (not offloaded, sliding or
    quantized) holding the S - T earlier columns, appended to as the transformers forward would.
    Returns the next-token logits of the last column (B, V). For T > 1 the last layer runs its
    query, attention and MLP at the last column only (the other columns need only their K/V).

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
        self.layers = [LayerWeights(layer) for layer in self.inner.layers]
        self.norm = (self.inner.norm.weight, self.inner.norm.variance_epsilon)
        self.head = (self.model.lm_head.weight, self.model.lm_head.bias)
        self.rotary = RotaryTable(self.inner.rotary_emb)

    @torch.inference_mode()
    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache) -> torch.Tensor:
        T = ids.shape[1]
        x = self.inner.embed_tokens(ids)                                    # (B, T, H)
        cos, sin = self.rotary(x, pos)                                      # (B, 1, T, D), sin folded
        # decoding: the one query sees every real column; a prefill: causal within the new columns
        attn = causal_mask(mask.bool(), T) if T > 1 else mask.bool()[:, None, None, :]   # (B, 1, T, S)
        last = len(self.layers) - 1
        for i, la in enumerate(self.layers):
            h = rms(x, *la.norm1)
            k, v = cache.layers[i].update(la.heads(h, "k", cos, sin), la.heads(h, "v"))   # (B, KV, S, D)
            # a prefill's last layer: only the last position's output is read, the rest need only K/V
            x = la.finish(x, h, k, v, cos, sin, attn, only_last=i == last and T > 1)
        return F.linear(rms(x[:, -1], *self.norm), *self.head)
