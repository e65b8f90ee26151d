"""Measure whether a base policy can *start* RL: the numbers that predict a non-zero reward.

``probe_policy`` samples trajectories with the real rollout engine and reports:

* ``format_valid`` — share of responses the format grammar accepts;
* ``query_has_entity`` — share of queries that contain the question's subject (hop 1)
  or, for two-hop questions, the bridge entity (hop 2): searches that can find evidence;
* ``answer_copied`` — share of given answers that occur verbatim in the retrieved text
  the policy read (a policy that cannot copy never hits the answer by chance);
* ``em`` — exact match, and ``searches`` per trajectory.
"""
from __future__ import annotations

import torch

from searchr1.data.qa import QAExample
from searchr1.data.prompts import make_prompt
from searchr1.protocol import policy_answer, validate_format
from searchr1.rewards import exact_match, normalize_answer
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.config import RolloutConfig
from searchr1.rollout.engine import RolloutEngine
from searchr1.search.base import Retriever


def _contains(text: str, phrase: str) -> bool:
    p = normalize_answer(phrase)
    return bool(p) and f" {p} " in f" {normalize_answer(text)} "


def probe_policy(model, tokenizer, retriever: Retriever, questions: list[QAExample],
                 rollout: RolloutConfig) -> dict[str, float]:
    """Sample one trajectory per question with ``rollout`` settings; return the rates above."""
    engine = RolloutEngine(HFBackend(model, tokenizer), retriever, tokenizer, rollout)
    with torch.no_grad():
        trajs = engine.run([make_prompt(q.question) for q in questions], [q.id for q in questions])
    n_valid = n_q = n_q_ent = n_ans = n_copied = 0
    em = 0.0
    for q, t in zip(questions, trajs):
        segs = t.segments
        n_valid += validate_format(t.response_text, segments=segs).ok
        targets = [q.metadata.get("subject", ""), q.metadata.get("bridge", "")]
        for query in t.queries:
            n_q += 1
            n_q_ent += any(_contains(query, x) for x in targets if x)
        answer = policy_answer(t.response_text, segs)
        if answer is not None and normalize_answer(answer):
            n_ans += 1
            read = "".join(text for text, sampled in segs if not sampled)
            n_copied += _contains(read, answer)
        em += exact_match(answer, q.golden_answers)
    n = max(1, len(trajs))
    return {"format_valid": n_valid / n, "query_has_entity": n_q_ent / max(1, n_q),
            "answer_copied": n_copied / max(1, n_ans), "em": em / n,
            "searches": sum(t.searches for t in trajs) / n, "answered": n_ans / n}
