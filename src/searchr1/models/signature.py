"""What a causal LM's ``forward`` accepts, read from its signature (the base model's under a peft
wrapper, which passes keyword arguments through). Shared by the rollout backend and the trainer."""
from __future__ import annotations

import inspect


def forward_params(model) -> frozenset[str]:
    """Parameter names of ``model.forward``; empty when the signature cannot be read."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        return frozenset(inspect.signature(base.forward).parameters)
    except (TypeError, ValueError):   # a forward without an introspectable signature: use the plain call
        return frozenset()


def cache_kwarg(model) -> str | None:
    """Name of the KV-cache argument of ``model.forward`` (``cache`` | ``past_key_values``), or None."""
    params = forward_params(model)
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    return None
