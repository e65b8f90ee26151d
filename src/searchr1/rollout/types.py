"""What a rollout produces and the learner consumes.

Token ids are kept exactly as sampled (token-in / token-out); injected text
(prompt, observations, corrective messages) is tokenized on its own. ``mask`` is
provenance, never derived from token values: 1 = sampled by the policy, 0 = injected.
``segments`` is the response as decoded runs of equal provenance, recorded as the engine goes, so
rewards and evaluation need not re-decode (``searchr1.protocol.segments_from_mask`` rebuilds them
for trajectories that come from elsewhere).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Trajectory:
    prompt_ids: list[int]                 # (P,) the prompt, as fed to the model
    response_ids: list[int]               # (R,) everything after the prompt: sampled + injected
    response_mask: list[int]              # (R,) 1 = sampled by the policy, 0 = injected
    response_logprobs: list[float] | None = None  # (R,) sampling log-prob of sampled tokens, 0.0 at injected ones
    response_text: str = ""               # decoded response (for rewards, logs)
    answer: str | None = None             # text of the final <answer>, None when none was given
    finish_reason: str = ""               # "answer" | "max_turns" | "budget" | "eos"
    turns: int = 0
    searches: int = 0
    valid_actions: int = 0
    invalid_actions: int = 0
    search_failures: int = 0
    queries: list[str] = field(default_factory=list)
    retrieved_ids: list[list[str]] = field(default_factory=list)
    truncated: dict[str, int] = field(default_factory=dict)  # budget name -> tokens cut
    segments: list[tuple[str, bool]] = field(default_factory=list)  # response as (text, sampled) runs, in order
    generated_tokens: int = 0             # tokens the model generated (an API's own count when it reports one)
    example_id: str | None = None         # the QA row this trajectory answers
    group_id: int | None = None           # GRPO group (same question)
