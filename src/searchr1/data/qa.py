"""QA examples: the unit every loader produces and every trainer/evaluator consumes."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class QAExample:
    id: str
    question: str
    golden_answers: list[str]
    metadata: dict = field(default_factory=dict)  # e.g. {"type": "two-hop", "evidence_ids": [...], "data_source": "nq"}
