"""``searchr1 corpus | index | search | serve``."""
from __future__ import annotations

import argparse
import json
import sys

from searchr1.search.bm25 import BM25Config
from searchr1.search.corpus import iter_corpus, write_corpus_jsonl, write_corpus_parquet
from searchr1.search.corpus_build import build_wiki_corpus, iter_wiki_passages, synthetic_corpus
from searchr1.search.dense import DEFAULT_ENCODER, DenseConfig
from searchr1.search.documents import build_corpus
from searchr1.search.index import IndexConfig, build_index, load_retriever
from searchr1.search.server import ServerConfig, format_results, serve


def register(subparsers) -> None:
    p = subparsers.add_parser("corpus", help="build or inspect corpora")
    csub = p.add_subparsers(dest="corpus_command", metavar="<action>", required=True)
    w = csub.add_parser("wiki", help="10k Wikipedia lead summaries as ~100-word passages (Search-R1 JSONL)")
    w.add_argument("--out", required=True, help="output .jsonl (or .parquet)")
    w.add_argument("--words", type=int, default=100, help="words per passage (default 100)")
    w.set_defaults(func=_corpus_wiki)
    s = csub.add_parser("synthetic", help="generated Zipf-word passages (benchmarks)")
    s.add_argument("--out", required=True)
    s.add_argument("-n", type=int, default=100_000, help="number of passages")
    s.add_argument("--words", type=int, default=100)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_corpus_synthetic)
    b = csub.add_parser("build", help="your documents (.txt .md .html .pdf in a folder) as ~100-word passages; "
                                      "incremental: unchanged files are not re-read")
    b.add_argument("dir", help="folder of documents (searched recursively)")
    b.add_argument("--out", required=True, help="output corpus .jsonl (then: searchr1 index --corpus OUT ...)")
    b.add_argument("--words", type=int, default=100, help="words per passage")
    b.add_argument("--overlap", type=int, default=20, help="words shared by consecutive passages of a document")
    b.set_defaults(func=_corpus_build)
    st = csub.add_parser("stats", help="count passages and check every row parses")
    st.add_argument("path")
    st.set_defaults(func=_corpus_stats)

    p = subparsers.add_parser("index", help="build a BM25 or dense index from a corpus")
    p.add_argument("--corpus", required=True, help="corpus .jsonl / .parquet")
    p.add_argument("--out", required=True, help="index directory")
    p.add_argument("--retriever", choices=["bm25", "dense"], default="bm25")
    p.add_argument("--encoder", help="dense: HF encoder path or name (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--prefix", choices=["auto", "e5", "bge", "none"], default="auto", help="dense prefix convention")
    p.add_argument("--faiss", choices=["flat", "hnsw"], default="flat", help="dense: FAISS index type")
    p.add_argument("--batch-size", type=int, default=64, help="dense: passages per encoder batch")
    p.add_argument("--device", default="cpu", help="dense: torch device")
    p.add_argument("--k1", type=float, default=0.9, help="bm25: k1")
    p.add_argument("--b", type=float, default=0.4, help="bm25: b")
    p.set_defaults(func=_index)

    p = subparsers.add_parser("search", help="query an index from the command line")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("query", nargs="+", help="one or more queries")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print Search-R1 response JSON")
    p.set_defaults(func=_search)

    p = subparsers.add_parser("serve", help="serve an index over HTTP (Search-R1 /retrieve schema)")
    p.add_argument("--index", required=True)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (default: $SEARCHR1_TOKEN)")
    p.add_argument("--max-topk", type=int, default=100)
    p.add_argument("--max-queries", type=int, default=512, help="most queries per request")
    p.add_argument("--default-topk", type=int, default=3)
    p.set_defaults(func=_serve)


def _corpus_wiki(args) -> int:
    if str(args.out).endswith((".parquet", ".pq")):
        n = write_corpus_parquet(iter_wiki_passages(args.words), args.out)
    else:
        n = build_wiki_corpus(args.out, args.words)
    print(f"wrote {n} passages to {args.out}")
    return 0


def _corpus_synthetic(args) -> int:
    n = write_corpus_jsonl(synthetic_corpus(args.n, args.words, args.seed), args.out)
    print(f"wrote {n} passages to {args.out}")
    return 0


def _corpus_build(args) -> int:
    report = build_corpus(args.dir, args.out, args.words, args.overlap)
    for name, why in report.skipped:
        print(f"skipped {name}: {why}", file=sys.stderr)
    print(f"wrote {args.out}: {report.summary()}")
    return 0


def _corpus_stats(args) -> int:
    n = words = 0
    for doc in iter_corpus(args.path):
        n += 1
        words += len(doc.text.split())
    print(f"{args.path}: {n} passages, {words / max(n, 1):.1f} words per passage on average")
    return 0


def _index(args) -> int:
    config = IndexConfig(
        retriever=args.retriever,
        bm25=BM25Config(k1=args.k1, b=args.b),
        dense=DenseConfig(encoder=args.encoder or DEFAULT_ENCODER, prefix=args.prefix, faiss=args.faiss,
                          batch_size=args.batch_size, device=args.device),
        show_progress=True,
    )
    retriever = build_index(args.corpus, args.out, config)
    print(f"indexed {len(retriever)} passages ({args.retriever}) into {args.out}")
    return 0


def _search(args) -> int:
    results = load_retriever(args.index).search(args.query, args.topk)
    if args.json:
        print(json.dumps(format_results(results, return_scores=True), ensure_ascii=False, indent=2))
        return 0
    for q, hits in zip(args.query, results):
        print(f"query: {q}")
        if not hits:
            print("  (no passage shares a term with this query)")
        for rank, h in enumerate(hits, 1):
            snippet = h.doc.text if len(h.doc.text) < 160 else h.doc.text[:157] + "..."
            print(f"  {rank}. [{h.score:.3f}] {h.doc.title} (id {h.doc.id}): {snippet}")
    return 0


def _serve(args) -> int:
    config = ServerConfig(default_topk=args.default_topk, max_topk=args.max_topk, max_queries=args.max_queries)
    print(f"serving {args.index} on http://{args.host}:{args.port}/retrieve (Ctrl-C to stop)", flush=True)
    serve(args.index, host=args.host, port=args.port, token=args.token, config=config)
    return 0
