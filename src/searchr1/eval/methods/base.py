"""The shape every method shares, and the pieces they reuse: answer extraction and scoring.

Answer extraction (recorded in ``Prediction.answer_source``):

* ``"tag"``: the last complete ``<answer>…</answer>`` (all methods);
* ``"answer-is"``: otherwise "... the answer is X" (methods that reason in free text:
  cot, ircot, search-o1 — the reader convention of IRCoT and FlashRAG);
* ``"plain"``: otherwise the first non-empty line (direct and rag, which ask for the
  bare answer);
* ``"none"``: no answer; it scores 0.

``search-r1`` and ``r1`` accept tags only, as the paper's reward does.
"""
from __future__ import annotations

import re
import time

from searchr1.data.qa import QAExample
from searchr1.eval.types import EvalContext, Prediction
from searchr1.models.generate import Transcript
from searchr1.protocol import extract_answer
from searchr1.rewards import exact_match, f1, subem

_ANSWER_IS = re.compile(r"answer is\s*:?\s*(.+?)(?:\.\s|\.$|\n|$)", re.IGNORECASE)
_TAG = re.compile(r"</?(think|search|answer|information)>")


class Method:
    """Base class: ``run(examples, ctx) -> list[Prediction]`` (one per example, in order)."""

    name: str = ""
    needs_retriever: bool = False
    answer_rules: tuple[str, ...] = ("tag",)
    templates: dict[str, str] = {}
    """Prompt texts this method uses; hashed into the protocol manifest."""

    def run(self, examples: list[QAExample], ctx: EvalContext, dataset: str = "") -> list[Prediction]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Method settings for the manifest (override to add knobs)."""
        return {"answer_rules": list(self.answer_rules)}

    # -- shared pieces -------------------------------------------------------------
    def extract(self, response: str) -> tuple[str | None, str]:
        return extract_final_answer(response, self.answer_rules)

    def finish(self, ex: QAExample, dataset: str, t: Transcript, started: float, **stats) -> Prediction:
        """Build the scored Prediction of one example from its transcript and counters."""
        model_text = "".join(text for src, text in t.segments if src == "model")
        answer, source = self.extract(model_text)
        pred = Prediction(method=self.name, dataset=dataset, id=str(ex.id), question=ex.question,
                          golden_answers=list(ex.golden_answers), answer=answer, answer_source=source,
                          response=t.response, segments=[[s, x] for s, x in t.segments],
                          seconds=round(time.perf_counter() - started, 3), **stats)
        pred = score(pred, ex)
        if not self.needs_retriever:
            pred.evidence_recall = None
        return pred


def user_prompt(text: str) -> Transcript:
    return Transcript(messages=[{"role": "user", "content": text}])


def extract_final_answer(response: str, rules: tuple[str, ...]) -> tuple[str | None, str]:
    """(answer, source) following ``rules`` in order; see the module docstring."""
    if "tag" in rules:
        ans = extract_answer(response)
        if ans is not None:
            return ans, "tag"
    if "answer-is" in rules:
        found = _ANSWER_IS.findall(response)
        if found:
            return _TAG.sub("", found[-1]).strip(" *\"'"), "answer-is"
    if "plain" in rules:
        for line in _TAG.sub("", response).splitlines():
            if line.strip():
                return line.strip(), "plain"
    return None, "none"


def score(pred: Prediction, ex: QAExample) -> Prediction:
    """Fill EM / sub-EM / F1 and, when the example lists gold evidence, the evidence recall."""
    pred.em = exact_match(pred.answer, ex.golden_answers)
    pred.subem = subem(pred.answer, ex.golden_answers)
    pred.f1 = f1(pred.answer, ex.golden_answers)
    evidence = (ex.metadata or {}).get("evidence_ids")
    if evidence:
        seen = {d for ids in pred.retrieved_ids for d in ids}
        pred.evidence_recall = sum(1 for e in evidence if str(e) in seen) / len(evidence)
    return pred
