"""searchr1.rollout: the multi-turn search rollout (engine, generation backends).

The tag grammar and wire format live in :mod:`searchr1.protocol` (re-exported here: the action
parser and the corrective message). Backends live in :mod:`searchr1.rollout.backends`
(``hf.HFBackend``, ``vllm.VLLMBackend``, ``openai.ChatBackend``, ``scripted.ScriptedBackend``);
importing this package does not import torch.
"""
from searchr1.protocol import INVALID_ACTION_TEXT, Action, parse_action
from searchr1.rollout.config import RolloutConfig
from searchr1.rollout.engine import RolloutEngine, build_prompts, rollout_metrics
from searchr1.rollout.types import Trajectory

__all__ = [
    "INVALID_ACTION_TEXT", "Action", "RolloutConfig", "RolloutEngine", "Trajectory",
    "build_prompts", "parse_action", "rollout_metrics",
]
