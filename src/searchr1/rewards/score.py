"""Outcome rewards: ``(response, golden_answers) -> (score, components)``.

Pure and deterministic: no printing, no randomness, no state.

What is parsed. Only the response (never the prompt: Search-R1 matches answers in
prompt + response, which makes the reward depend on the prompt's wording, and its
template contains the example ``<answer> Beijing </answer>``). Inside the response,
no reward may pay for text the environment injected:

* ``<information>`` blocks are always skipped when looking for the answer;
* the corrective message after an invalid action is plain text that itself contains
  ``<answer> and </answer>``. Pass ``segments`` (the response as ``(text, sampled)``
  pieces, see ``searchr1.protocol``) and the answer is taken from
  policy-written text only. The rollout's ``Trajectory.answer`` is extracted from
  sampled segments in the same way; without segments the corrective message cannot
  be told apart from policy text.

Kinds. ``"em"``, ``"subem"``, ``"f1"`` score the final answer with that metric (no
answer scores 0). ``"format"`` is the format-aware reward of Search-R1 v0.3 (Jin et
al., "An Empirical Study on Reinforcement Learning for Reasoning-Search Interleaved
LLM Agents"), with ``correct`` decided by ``answer_metric``:

====================  ============  ==========================================
answer                well-formed   score (defaults)
====================  ============  ==========================================
correct               yes           ``correct_score`` (1.0)
correct               no            ``correct_score - format_score`` (0.8)
wrong or missing      yes           ``format_score`` (0.2) [+ ``retrieval_score``
                                    when a gold answer is in the retrieved text]
wrong                 no            ``final_format_score`` (0.0)
missing               no            0.0
====================  ============  ==========================================

Departure: Search-R1's code pays ``final_format_score`` (0.1 in some of its
scripts) to an ill-formed response that holds a wrong answer; the paper's table
pays 0, which is our default. Set ``final_format_score=0.1`` for the code's
behaviour.

Components (all floats, for logging): ``em``, ``subem``, ``f1`` of the answer,
``format`` (1.0 when well-formed), ``answered`` (1.0 when an answer was found) and
``retrieval_hit`` (1.0 when a normalized gold answer occurs in the injected
``<information>`` text).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from searchr1.rewards.metrics import METRICS, as_gold_list, normalize_answer
from searchr1.protocol import Segment, policy_answer, validate_format

KINDS = ("em", "subem", "f1", "format")


@dataclass(frozen=True)
class RewardConfig:
    kind: str = "em"
    """Which reward: "em", "subem", "f1" (the metric of the final answer) or "format" (v0.3)."""
    answer_metric: str = "em"
    """For kind="format": the metric that decides whether the answer is correct ("em" or "subem")."""
    correct_score: float = 1.0
    """For kind="format": reward of a correct, well-formed response."""
    format_score: float = 0.2
    """For kind="format": paid for a well-formed response, subtracted from a correct ill-formed one."""
    final_format_score: float = 0.0
    """For kind="format": reward of an ill-formed response with a wrong answer (Search-R1 code: 0.1)."""
    retrieval_score: float = 0.0
    """For kind="format": bonus for a well-formed wrong response whose retrieved text holds a gold answer."""
    require_think: bool = True
    """Format grammar: every search and the answer must follow a <think> block."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown reward kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        if self.answer_metric not in ("em", "subem"):
            raise ValueError(
                f"answer_metric must be 'em' or 'subem' (a yes/no decision), got {self.answer_metric!r}; "
                "use kind='f1' for a graded reward."
            )
        for name in ("correct_score", "format_score", "final_format_score", "retrieval_score"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}; rewards here are non-negative.")
        if self.format_score > self.correct_score:
            raise ValueError(
                f"format_score ({self.format_score}) exceeds correct_score ({self.correct_score}); "
                "a well-formed wrong answer would beat a correct one — lower format_score."
            )


_INFORMATION = re.compile(r"<information>(.*?)</information>", re.S)


def _retrieved_text(response: str) -> str:
    """Content of every complete information block (found even when the response is ill-formed)."""
    return " ".join(m.group(1) for m in _INFORMATION.finditer(response))


def retrieval_hit(response: str, golden_answers: str | Iterable[str]) -> float:
    """1.0 when a normalized gold answer occurs in the normalized text of the information blocks."""
    text = normalize_answer(_retrieved_text(response))
    golds = [normalize_answer(g) for g in as_gold_list(golden_answers)]
    return float(any(g and g in text for g in golds))


def compute_score(
    response: str | None,
    golden_answers: str | Iterable[str],
    kind: str | None = None,
    *,
    segments: Sequence[Segment] | None = None,
    config: RewardConfig | None = None,
    **weights: float | str | bool,
) -> tuple[float, dict[str, float]]:
    """Reward of one response. kind defaults to ``config.kind`` ("em" without a config).

    response: the response text; None = the concatenation of ``segments`` (which
    must then be given; with both, they must agree). weights: overrides of
    RewardConfig fields, e.g. ``format_score=0.3``.
    """
    if response is None:
        if segments is None:
            raise ValueError("compute_score needs the response text or its segments; pass one of them.")
        response = "".join(text for text, _ in segments)
    config = config or RewardConfig()
    if kind is not None:
        weights["kind"] = kind
    if weights:
        fields = {f.name for f in dataclasses.fields(RewardConfig)}
        unknown = sorted(set(weights) - fields)
        if unknown:
            raise TypeError(f"unknown reward option(s) {unknown}; valid options: {', '.join(sorted(fields))}.")
        config = dataclasses.replace(config, **weights)
    golds = as_gold_list(golden_answers)

    answer = policy_answer(response, segments)
    fmt = validate_format(response, segments=segments, require_think=config.require_think)
    components = {name: fn(answer, golds) for name, fn in METRICS.items()}
    components["format"] = float(fmt.ok)
    components["answered"] = float(answer is not None)
    components["retrieval_hit"] = retrieval_hit(response, golds)

    if config.kind != "format":
        return components[config.kind], components
    correct = components[config.answer_metric] == 1.0
    if correct:
        score = config.correct_score if fmt.ok else config.correct_score - config.format_score
    elif fmt.ok:
        score = config.format_score + (config.retrieval_score if components["retrieval_hit"] else 0.0)
    elif answer is not None:
        score = config.final_format_score
    else:
        score = 0.0
    return score, components
