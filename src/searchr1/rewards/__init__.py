"""searchr1.rewards — pure reward functions: normalization, EM / sub-EM / F1 and the (format-aware)
outcome reward. Answer extraction and the format grammar live in :mod:`searchr1.protocol` and are
re-exported here.

Typical use::

    from searchr1.rewards import compute_score
    score, components = compute_score(traj.response_text, example.golden_answers, kind="em",
                                      segments=segments)  # segments: see searchr1.protocol
"""
from searchr1.rewards.metrics import METRICS, exact_match, f1, normalize_answer, subem
from searchr1.rewards.score import KINDS, RewardConfig, compute_score, retrieval_hit
from searchr1.protocol import (
    Block,
    FormatCheck,
    Segment,
    extract_answer,
    parse_blocks,
    policy_answer,
    segments_from_mask,
    strip_information,
    validate_format,
)

__all__ = [
    "METRICS", "KINDS", "Block", "FormatCheck", "RewardConfig", "Segment",
    "compute_score", "exact_match", "extract_answer", "f1", "normalize_answer",
    "parse_blocks", "policy_answer", "retrieval_hit", "segments_from_mask",
    "strip_information", "subem", "validate_format",
]
