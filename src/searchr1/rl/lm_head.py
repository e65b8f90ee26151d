"""The last hidden states of a causal LM instead of its logits, for log-probs without (B, T, V) logits.

A transformers causal LM is ``logits = lm_head(trunk(ids).last_hidden_state)``. The teacher-forced
passes only need ``log π(token)`` and the entropy per position, so they can run the model with
``logits_to_keep=1`` (one position projected to the vocabulary), take the trunk's last hidden
state from a forward hook, and project it to the vocabulary in chunks
(:func:`~searchr1.rl.core_algos.chunked_logprobs_and_entropy`). The model's own ``forward`` still
runs (a peft wrapper, FSDP hooks and the KV cache behave as in the plain call).

Heads that are not ``lm_head(hidden)`` (soft-capped logits, a copy / pointer head such as
``models/copy_lm.py``) are found by :func:`hidden_unsupported`, which compares the two on a few
tokens; such models use the full logits.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

from searchr1.models.signature import forward_params


def split_lm(model) -> tuple[nn.Module, nn.Module] | str:
    """(trunk, head) of a causal LM (through a peft wrapper), or the reason there is none.

    trunk: the module whose output's ``last_hidden_state`` feeds ``head`` (``model.base_model`` of a
    transformers model); head: ``get_output_embeddings()`` (a tied, biased or LoRA-wrapped linear layer).
    """
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    trunk = getattr(hf, "base_model", None)
    head = hf.get_output_embeddings() if hasattr(hf, "get_output_embeddings") else None
    if trunk is None or trunk is hf or head is None:
        return f"{type(hf).__name__} has no separate trunk (base_model) and output embeddings (lm_head)"
    if "logits_to_keep" not in forward_params(model):
        return f"{type(hf).__name__}.forward takes no `logits_to_keep` (it would project every position anyway)"
    return trunk, head


@contextmanager
def capture_hidden(trunk: nn.Module):
    """Within the block, ``box[0]`` holds the last hidden state (B, L, H) of the latest ``trunk`` call."""
    box: list[Tensor] = []

    def hook(_module, _args, out):
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        box[:] = [h]

    handle = trunk.register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def hidden_forward(model, trunk: nn.Module, **kwargs) -> tuple[Tensor, object]:
    """Run ``model(**kwargs, logits_to_keep=1)``; return (last hidden state (B, L, H), the model's output)."""
    with capture_hidden(trunk) as box:
        out = model(logits_to_keep=1, **kwargs)
    if not box:
        raise RuntimeError(f"{type(trunk).__name__} was not called by the model's forward; "
                           "set actor.logprob_chunk_size=0")
    return box[0], out


@torch.no_grad()
def hidden_unsupported(model, tol: float = 1e-4) -> str | None:
    """None when ``head(last hidden state)`` reproduces ``model``'s logits; otherwise the reason.

    Checks the structure (:func:`split_lm`), then compares both on one 6-token row in eval mode
    (the model's train/eval mode is restored). Soft-capped or mixture heads fail the comparison.
    """
    parts = split_lm(model)
    if isinstance(parts, str):
        return parts
    trunk, head = parts
    device = next(model.parameters()).device
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or head.weight.shape[0]
    ids = (torch.arange(6, device=device) * 7 + 3).remainder(vocab)[None, :]
    was_training = model.training
    model.eval()
    try:
        full = model(input_ids=ids, use_cache=False)
        full = (full.logits if hasattr(full, "logits") else full[0]).float()
        h, _ = hidden_forward(model, trunk, input_ids=ids, use_cache=False)
        mine = head(h).float()
    finally:
        model.train(was_training)
    err = float((full - mine).abs().max())
    scale = float(full.abs().max()) or 1.0
    if err > tol * max(1.0, scale):
        return (f"{type(model).__name__}'s logits are not lm_head(last hidden state) "
                f"(max difference {err:.3g}: soft-capping or a custom head)")
    return None
