"""Write a SearchWorld to disk and measure what retrieval alone can reach.

Files written by ``write_world(world, out)``:

* ``corpus.jsonl`` — Search-R1 corpus rows ``{"id", "contents": "\\"Title\\"\\ntext"}``;
* ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (+ ``heldout.jsonl``) — FlashRAG rows
  ``{"id", "question", "golden_answers", "metadata"}``;
* ``world.json`` — the config and every entity with its facts (for inspection);
* ``stats.json`` / ``stats.md`` — counts per split and type, and, when a retriever is
  given, the answer-in-top-k rate with the raw question as query (what RAG can reach).
"""
from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path

from searchr1.data.qa import QAExample
from searchr1.data.world import World
from searchr1.rewards.metrics import normalize_answer
from searchr1.search.base import Retriever
from searchr1.search.corpus import write_corpus_jsonl


def answer_in_text(golden_answers: list[str], text: str) -> bool:
    """Whether any gold answer occurs, as whole normalized words, in ``text``."""
    hay = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(g)} " in hay for g in golden_answers if normalize_answer(g))


def retrieval_recall(questions: list[QAExample], retriever: Retriever, ks: tuple[int, ...] = (1, 3, 5),
                     batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Answer-in-top-k rate per question type (and ``"all"``) with the raw question as query.

    Returns ``{type: {"top1": rate, "top3": rate, ...}}``.
    """
    hits_by_type: dict[str, list[list[bool]]] = defaultdict(list)
    kmax = max(ks)
    for i in range(0, len(questions), batch_size):
        batch = questions[i:i + batch_size]
        results = retriever.search([q.question for q in batch], kmax)
        for q, hits in zip(batch, results):
            found = [answer_in_text(q.golden_answers, h.doc.contents) for h in hits]
            first = next((r for r, ok in enumerate(found) if ok), kmax)
            row = [first < k for k in ks]
            hits_by_type[q.metadata.get("type", "all")].append(row)
            if q.metadata.get("type"):
                hits_by_type["all"].append(row)
    return {t: {f"top{k}": sum(r[j] for r in rows) / len(rows) for j, k in enumerate(ks)}
            for t, rows in sorted(hits_by_type.items())}


def world_stats(world: World, retriever: Retriever | None = None) -> dict:
    """Counts per split, type and relation; BM25 (or any retriever) recall on the test split."""
    stats: dict = {"seed": world.config.seed, "documents": len(world.documents),
                   "entities": {k: len(world.of_kind(k)) for k in
                                ("country", "city", "organisation", "person", "work")},
                   "questions": len(world.questions), "splits": {}}
    for name, qs in world.splits.items():
        by_type: dict[str, int] = defaultdict(int)
        by_rel: dict[str, int] = defaultdict(int)
        for q in qs:
            by_type[q.metadata["type"]] += 1
            by_rel[q.metadata["relation"]] += 1
        stats["splits"][name] = {"total": len(qs), "by_type": dict(by_type), "by_relation": dict(by_rel)}
    if retriever is not None:
        stats["retrieval"] = {"split": "test", "query": "raw question",
                              "answer_in_topk": retrieval_recall(world.splits["test"], retriever)}
    return stats


def stats_markdown(stats: dict) -> str:
    lines = [f"# SearchWorld (seed {stats['seed']})", "",
             f"{stats['documents']} passages; entities: "
             + ", ".join(f"{n} {k}" for k, n in stats["entities"].items()) + f"; {stats['questions']} questions.",
             "", "| split | total | single-hop | two-hop |", "|---|---|---|---|"]
    for name, s in stats["splits"].items():
        lines.append(f"| {name} | {s['total']} | {s['by_type'].get('single-hop', 0)} | "
                     f"{s['by_type'].get('two-hop', 0)} |")
    if "retrieval" in stats:
        rec = stats["retrieval"]["answer_in_topk"]
        ks = list(next(iter(rec.values())).keys())
        lines += ["", "Answer found in the top-k passages retrieved for the raw question "
                  "(test split; an upper bound for RAG):", "",
                  "| type | " + " | ".join(ks) + " |", "|---|" + "---|" * len(ks)]
        for t, r in rec.items():
            lines.append(f"| {t} | " + " | ".join(f"{r[k]:.2f}" for k in ks) + " |")
    return "\n".join(lines) + "\n"


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def qa_row(q: QAExample) -> dict:
    return {"id": q.id, "question": q.question, "golden_answers": list(q.golden_answers), "metadata": q.metadata}


def write_world(world: World, out: str | Path, retriever: Retriever | None = None) -> dict:
    """Write corpus, splits, world.json and stats under ``out``; return the stats dict."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_corpus_jsonl(world.documents, out / "corpus.jsonl")
    for name, qs in world.splits.items():
        _write_jsonl([qa_row(q) for q in qs], out / f"{name}.jsonl")
    table = {"config": dataclasses.asdict(world.config),
             "entities": [dataclasses.asdict(e) for e in world.entities.values()]}
    (out / "world.json").write_text(json.dumps(table, indent=1, ensure_ascii=False), encoding="utf-8")
    stats = world_stats(world, retriever)
    (out / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    (out / "stats.md").write_text(stats_markdown(stats), encoding="utf-8")
    return stats
