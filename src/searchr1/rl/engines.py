"""The rollout engines the trainer drives: HF on the policy's live weights, or a vLLM engine that holds its
own copy (synced after each update), and the comparison of the engine's log-probs with the trainer's."""
from __future__ import annotations

import torch

from searchr1.models.smollm2 import SMOLLM2_NAMES, smollm2_dir
from searchr1.rl.batch import Batch
from searchr1.rl.config import TrainConfig
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.backends.vllm import VLLMBackend


def holds_own_weights(backend) -> bool:
    """True for an engine with its own copy of the weights (vLLM): it needs a sync after each update, returns
    its own log-probs and can sleep during the update. The HF backend runs the policy itself."""
    return hasattr(backend, "sync_weights")


def engine_logprobs(trajs, batch: Batch) -> torch.Tensor | None:
    """The sampling engine's log-prob of each response token as a (B, R) tensor aligned with ``batch``
    (0 at injected and padded positions); None when a trajectory carries none."""
    if any(t.response_logprobs is None for t in trajs):
        return None
    out = torch.zeros(batch.responses.shape, dtype=torch.float32)
    for i, t in enumerate(trajs):
        out[i, :len(t.response_logprobs)] = torch.tensor(t.response_logprobs, dtype=torch.float32)
    return out


def logprob_abs_diff(engine: torch.Tensor, trainer: torch.Tensor, policy_mask: torch.Tensor) -> tuple[float, float]:
    """(mean, max) of |engine - trainer| over the tokens where ``policy_mask`` is 1. All (B, R); (0, 0) when none."""
    diff = (engine - trainer).abs()[policy_mask.bool()]
    if diff.numel() == 0:
        return 0.0, 0.0
    return float(diff.mean()), float(diff.max())


def vllm_backend(cfg: TrainConfig) -> VLLMBackend:
    """One in-process vLLM engine on ``cfg.model.path`` (its weights are replaced by the policy's before the
    first rollout, so a cold start or a resumed checkpoint is what it samples)."""
    path = str(smollm2_dir()) if cfg.model.path in SMOLLM2_NAMES else cfg.model.path
    return VLLMBackend.from_config(path, cfg.rollout.vllm, cfg.vllm_dtype, tokenizer=cfg.model.tokenizer or None,
                                   trust_remote_code=cfg.model.trust_remote_code, seed=cfg.seed)


def hf_backend(model, tokenizer):
    """The HF backend on the policy's live weights."""
    # a peft wrapper hides the cache arguments; its base model carries the (active) adapter layers
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return HFBackend(base, tokenizer)
