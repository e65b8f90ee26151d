"""searchr1.rollout: the multi-turn search rollout (engine, tag parsing, generation backends).

Backends live in :mod:`searchr1.rollout.backends` (``hf.HFBackend``, ``vllm.VLLMBackend``,
``scripted.ScriptedBackend``); importing this package does not import torch.
"""
from searchr1.rollout.config import RolloutConfig
from searchr1.rollout.engine import RolloutEngine, build_prompts, rollout_metrics
from searchr1.rollout.tags import INVALID_ACTION_TEXT, Action, parse_action
from searchr1.rollout.types import Trajectory

__all__ = [
    "INVALID_ACTION_TEXT", "Action", "RolloutConfig", "RolloutEngine", "Trajectory",
    "build_prompts", "parse_action", "rollout_metrics",
]
