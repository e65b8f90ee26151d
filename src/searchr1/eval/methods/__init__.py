"""The paper's baselines and Search-R1 as evaluation methods sharing one interface.

``get_method(name).run(examples, ctx, dataset) -> list[Prediction]``; see each module.
"""
from __future__ import annotations

from searchr1.eval.methods.base import Method, extract_final_answer, score
from searchr1.eval.methods.ircot import IRCoT
from searchr1.eval.methods.search_o1 import SearchO1
from searchr1.eval.methods.search_r1 import SearchR1
from searchr1.eval.methods.single import RAG, R1, CoT, Direct

METHODS: dict[str, type[Method]] = {
    "direct": Direct, "cot": CoT, "rag": RAG, "ircot": IRCoT,
    "search-o1": SearchO1, "search-r1": SearchR1, "r1": R1,
}


def get_method(name: str, **options) -> Method:
    """A method instance by name (``options`` go to its constructor)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}.")
    return METHODS[name](**options)


__all__ = ["METHODS", "Method", "get_method", "extract_final_answer", "score",
           "Direct", "CoT", "RAG", "R1", "IRCoT", "SearchO1", "SearchR1"]
