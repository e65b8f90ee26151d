"""A cross-encoder reranking stage over any retriever's top-n.

``CrossEncoderReranker(inner, RerankConfig(model="cross-encoder/ms-marco-MiniLM-L-6-v2", top_n=20))``
asks ``inner`` for ``max(top_n, topk)`` hits, scores every (query, passage) pair with a
sequence-classification model that has one output (a relevance logit), and returns the
``topk`` best, reranked; a hit's score becomes the model's raw logit. Ties keep the retriever's order.

The model is loaded with sentence-transformers' ``CrossEncoder`` when that package is
installed (the ``dense`` extra), else with transformers' ``AutoModelForSequenceClassification``;
either reads a local directory or a hub name. The passage text scored is Search-R1's
``contents`` (``"Title"\\ntext``), the same string the policy reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from searchr1.errors import ConfigError
from searchr1.search.base import Hit, Retriever, Wrapper


@dataclass
class RerankConfig:
    model: str = ""
    """Cross-encoder path or hub name ("" = no reranking)."""
    top_n: int = 20
    """Hits fetched from the retriever per query and rescored (at least the request's topk)."""
    batch_size: int = 32
    """(query, passage) pairs per forward pass."""
    max_length: int = 512
    """Tokens per pair; longer pairs are truncated."""
    device: str = "cpu"

    def __post_init__(self):
        if self.top_n < 1 or self.batch_size < 1 or self.max_length < 8:
            raise ConfigError(f"rerank needs top_n >= 1 (got {self.top_n}), batch_size >= 1 (got {self.batch_size}) "
                              f"and max_length >= 8 (got {self.max_length}).")


def _load_scorer(config: RerankConfig):
    """A function ``pairs -> list[float]`` (one relevance score per (query, passage) pair)."""
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        CrossEncoder = None
    import torch

    if CrossEncoder is not None:
        # the raw logit (Identity), as in the transformers path: one score scale whichever library loads the model
        model = CrossEncoder(config.model, device=config.device, max_length=config.max_length,
                             activation_fn=torch.nn.Identity())
        _check_labels(config.model, model.num_labels)
        return lambda pairs: [float(s) for s in model.predict(pairs, batch_size=config.batch_size,
                                                               show_progress_bar=False)]
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(config.model)
    model = AutoModelForSequenceClassification.from_pretrained(config.model).to(config.device).eval()
    _check_labels(config.model, model.config.num_labels)

    def score(pairs):
        out = []
        for s in range(0, len(pairs), config.batch_size):
            part = pairs[s:s + config.batch_size]
            enc = tok([q for q, _ in part], [p for _, p in part], truncation=True, max_length=config.max_length,
                      padding=True, return_tensors="pt").to(config.device)
            with torch.inference_mode():
                out.extend(model(**enc).logits[:, 0].float().tolist())
        return out

    return score


def _check_labels(name: str, labels: int) -> None:
    if labels != 1:
        raise ConfigError(f"rerank model {name} has {labels} outputs; a reranker needs a cross-encoder with one "
                          "relevance output (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2).")


class CrossEncoderReranker(Wrapper):
    """``search(queries, topk)``: ``inner``'s top-n per query, rescored by a cross-encoder."""

    def __init__(self, inner: Retriever, config: RerankConfig, scorer=None):
        if not config.model and scorer is None:
            raise ConfigError("rerank needs a model: --rerank MODEL (a local cross-encoder directory or hub name).")
        self.inner, self.config = inner, config
        self._score = scorer or _load_scorer(config)
        self.pairs_scored = 0

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        rows = self.inner.search(queries, max(self.config.top_n, topk))
        pairs = [(q, h.doc.contents) for q, hits in zip(queries, rows) for h in hits]
        scores = self._score(pairs) if pairs else []
        self.pairs_scored += len(pairs)
        out, i = [], 0
        for hits in rows:
            scored = [(scores[i + r], r, h) for r, h in enumerate(hits)]
            i += len(hits)
            scored.sort(key=lambda t: (-t[0], t[1]))  # best first, ties in the retriever's order
            out.append([Hit(h.doc, s) for s, _, h in scored[:topk]])
        return out
