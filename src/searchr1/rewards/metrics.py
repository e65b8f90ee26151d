"""Answer normalization and the three QA metrics: exact match, substring EM, token F1.

All three compare one prediction against a list of gold answers and take the best
match. Behaviour is identical to the SQuAD evaluation script, which Search-R1 and
FlashRAG both reuse:

* ``normalize_answer``: lowercase -> drop ASCII punctuation (``string.punctuation``)
  -> drop the words ``a``/``an``/``the`` -> collapse whitespace. Non-ASCII
  punctuation (``“``, ``—``, ``¿``) is kept, as in SQuAD.
* ``subem`` is a *character* substring test on normalized strings, as in Search-R1's
  ``subem_check`` ("art" is contained in "cartoon").
* ``f1`` is SQuAD v1 token F1; an empty normalized prediction scores 0.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

_DROP_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, remove articles, collapse whitespace."""
    text = text.lower()
    text = text.translate(_DROP_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def as_gold_list(golden_answers: str | Iterable[str]) -> list[str]:
    """Gold answers as a list of strings (a single string is one gold answer).

    Accepts any iterable (lists, tuples, numpy arrays read back from parquet).
    """
    if isinstance(golden_answers, str):
        return [golden_answers]
    golds = list(golden_answers)
    for g in golds:
        if not isinstance(g, str):
            raise TypeError(
                f"gold answers must be strings, got {type(g).__name__} {g!r}; "
                "convert them with str() when loading the data set."
            )
    return golds


def exact_match(prediction: str | None, golden_answers: str | Iterable[str]) -> float:
    """1.0 when the normalized prediction equals any normalized gold answer, else 0.0."""
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in as_gold_list(golden_answers)))


def subem(prediction: str | None, golden_answers: str | Iterable[str]) -> float:
    """1.0 when any normalized gold answer is a substring of the normalized prediction.

    An empty normalized gold answer never matches (it would be contained in anything).
    """
    if prediction is None:
        return 0.0
    pred = normalize_answer(prediction)
    for g in as_gold_list(golden_answers):
        gold = normalize_answer(g)
        if gold and gold in pred:
            return 1.0
    return 0.0


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str | None, golden_answers: str | Iterable[str]) -> float:
    """SQuAD token F1 between the prediction and each gold answer; the maximum is returned."""
    if prediction is None:
        return 0.0
    pred_tokens = normalize_answer(prediction).split()
    return max(
        (_token_f1(pred_tokens, normalize_answer(g).split()) for g in as_gold_list(golden_answers)),
        default=0.0,
    )


METRICS = {"em": exact_match, "subem": subem, "f1": f1}
