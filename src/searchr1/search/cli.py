"""``searchr1 corpus | index [import] | search | serve``."""
from __future__ import annotations

import argparse
import json
import sys

from searchr1.errors import UsageError
from searchr1.search.base import TOKEN_ENV
from searchr1.search.bm25 import BM25Config
from searchr1.search.cache import MODES, SearchCacheConfig
from searchr1.search.corpus import iter_corpus, write_corpus_jsonl, write_corpus_parquet
from searchr1.search.corpus_build import build_wiki_corpus, iter_wiki_passages, synthetic_corpus
from searchr1.search.dense import DEFAULT_ENCODER, DenseConfig, LoadOptions, encoder_dim
from searchr1.search.documents import build_corpus
from searchr1.search.faiss_index import factory_spec, make_index
from searchr1.search.index import IndexConfig, build_index, import_faiss_index, load_retriever, read_index_meta
from searchr1.search.qdrant import QdrantConfig
from searchr1.search.rerank import RerankConfig
from searchr1.search.server import ServerConfig, format_results, resolve_token, serve
from searchr1.search.web import PROVIDERS, WebConfig, parse_backend, resolve_endpoint


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

    p = subparsers.add_parser("index", help="build a BM25 or dense index from a corpus, or import a FAISS index",
                              description="`searchr1 index --corpus C --out DIR` builds an index; `searchr1 index "
                                          "import --faiss F --corpus C --encoder E --out DIR` serves an existing "
                                          "FAISS index and JSONL corpus (e.g. Search-R1's) in place, without copying.")
    p.add_argument("action", nargs="?", choices=["build", "import"], default="build",
                   help="build (default) or import an existing FAISS index")
    p.add_argument("--corpus", required=True, help="corpus .jsonl / .parquet (import: the .jsonl the index was built from)")
    p.add_argument("--out", required=True, help="index directory")
    p.add_argument("--retriever", choices=["bm25", "dense", "qdrant"], default="bm25",
                   help="bm25, dense (encoder + FAISS) or qdrant (encoder + a Qdrant collection)")
    p.add_argument("--qdrant-url", help="qdrant: http(s)://host:6333 (key from $QDRANT_API_KEY) or a directory "
                                        "for Qdrant's embedded local mode")
    p.add_argument("--qdrant-collection", default="searchr1", help="qdrant: collection name (replaced if present)")
    p.add_argument("--encoder", help="dense: HF encoder path or name (default: bundled all-MiniLM-L6-v2)")
    p.add_argument("--prefix", choices=["auto", "e5", "bge", "none"], default="auto", help="dense prefix convention")
    p.add_argument("--query-prefix", help="dense: text put before every query (default: from --prefix)")
    p.add_argument("--pooling", choices=["auto", "mean", "cls"], default="auto", help="dense: encoder pooling")
    p.add_argument("--faiss", default=None,
                   help="build: FAISS index, flat (default), hnsw or any FAISS factory string (HNSW32, IVF4096,PQ64, "
                        "OPQ64,IVF16384_HNSW32,PQ64...); import: the FAISS index file")
    p.add_argument("--nprobe", type=int, default=32, help="dense IVF: lists searched per query (saved as default)")
    p.add_argument("--train-size", type=int, default=100_000,
                   help="dense IVF/PQ: corpus-head vectors the index is trained on")
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
    _add_load_options(p)
    p.set_defaults(func=_search)

    p = subparsers.add_parser("serve", help="serve an index or a web search API over HTTP (Search-R1 /retrieve "
                                            "schema)")
    p.add_argument("--index", help="index directory (with the default --backend index)")
    add_backend_args(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port, 1-65535 (default 8000)")
    p.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV})")
    d = ServerConfig()
    p.add_argument("--default-topk", type=int, default=d.default_topk, help="topk for requests sending 0/null")
    p.add_argument("--max-topk", type=int, default=d.max_topk, help="largest topk per request")
    p.add_argument("--max-queries", type=int, default=d.max_queries, help="most queries per request")
    p.add_argument("--max-hits", type=int, default=d.max_hits, help="most passages per response (queries x topk)")
    p.add_argument("--max-query-chars", type=int, default=d.max_query_chars, help="longest query")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="largest request body")
    p.add_argument("--max-concurrent", type=int, default=d.max_concurrent, help="requests in flight (then 503)")
    p.add_argument("--max-inflight-bytes", type=int, default=d.max_inflight_bytes,
                   help="request-body bytes held in flight (then 503)")
    p.add_argument("--chunk-queries", type=int, default=d.chunk_queries,
                   help="smallest share of a batch per request; a batch aims at 8x this (0 = by retriever: bm25 8, "
                        "dense 256)")
    p.add_argument("--batches-in-flight", type=int, default=d.batches_in_flight,
                   help="batches searched at once (0 = by retriever: dense 2, others 1)")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout_s, help="seconds to receive a body (then 408)")
    p.add_argument("--docs", action="store_true", help="serve the OpenAPI pages (/docs); off by default")
    _add_load_options(p)
    p.set_defaults(func=_serve)


def _add_load_options(p) -> None:
    p.add_argument("--mmap", action="store_true",
                   help="memory-map the index (BM25 matrices, FAISS flat codes / IVF lists) instead of reading it")
    p.add_argument("--nprobe", type=int, help="dense IVF: lists searched per query (default: the index's)")
    p.add_argument("--ef-search", type=int, help="dense HNSW: search breadth (default: the index's)")
    p.add_argument("--k-factor", type=int, help="dense with a refine stage (...,RFlat): candidates re-scored "
                                                "exactly per wanted hit")
    p.add_argument("--faiss-gpu", action="store_true", help="dense: FAISS on every GPU, sharded (needs faiss-gpu)")
    p.add_argument("--encoder-workers", type=int, help="dense: query-encoder threads, each on one core (0 = torch's "
                                                       "own threading; default: serve uses one per CPU core)")
    p.add_argument("--encoder-dtype", choices=["fp32", "bf16"],
                   help="dense: query-encoder weights (default fp32; serve takes bf16 on CPUs with AMX/AVX512-BF16)")


def _load_options(args) -> LoadOptions:
    try:
        return LoadOptions(mmap=args.mmap, nprobe=args.nprobe, ef_search=args.ef_search, k_factor=args.k_factor,
                           gpu=args.faiss_gpu, encoder_workers=args.encoder_workers,
                           encoder_dtype=args.encoder_dtype)
    except ValueError as e:
        raise UsageError(f"{e} (--mmap, --nprobe, --ef-search, --faiss-gpu, --encoder-workers)") from None


def add_backend_args(p) -> None:
    """``--backend``, the web, search-cache and rerank flags of ``searchr1 serve``."""
    p.add_argument("--backend", default="index", metavar="NAME",
                   help=f"index (default: --index DIR) or a web search API: {', '.join('web:' + n for n in PROVIDERS)}"
                        " (keys from SERPER_API_KEY, SERPAPI_API_KEY, BRAVE_API_KEY)")
    p.add_argument("--web-base-url", default="", metavar="URL",
                   help="web: the provider's endpoint (SearxNG: your instance; default <NAME>_BASE_URL or the public one)")
    p.add_argument("--web-qps", type=float, default=0.0, help="web: requests per second (0 = the provider's default)")
    add_cache_args(p)
    p.add_argument("--rerank", default="", metavar="MODEL", help="rerank the top-n with this cross-encoder")
    p.add_argument("--rerank-top-n", type=int, default=RerankConfig.top_n, metavar="N",
                   help="hits per query the reranker rescores")


def add_cache_args(p) -> None:
    """``--search-cache PATH --search-cache-mode MODE`` (serve, eval, ask)."""
    p.add_argument("--search-cache", default="", metavar="PATH",
                   help="persistent search cache (SQLite file, shareable across processes)")
    p.add_argument("--search-cache-mode", choices=MODES, default=None,
                   help="off | rw (default with --search-cache) | record | replay (fail on a miss)")


def cache_config(args) -> SearchCacheConfig:
    """The search cache the ``--search-cache*`` flags ask for."""
    mode = args.search_cache_mode or ("rw" if args.search_cache else "off")
    return SearchCacheConfig(path=args.search_cache, mode=mode)


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


def _dense_config(args, faiss: str = "flat") -> DenseConfig:
    try:
        return DenseConfig(encoder=args.encoder or DEFAULT_ENCODER, prefix=args.prefix, faiss=faiss,
                           pooling=args.pooling, query_prefix=args.query_prefix, batch_size=args.batch_size,
                           device=args.device, nprobe=args.nprobe, train_size=args.train_size)
    except ValueError as e:
        raise UsageError(f"{e} (--faiss, --nprobe, --train-size, --batch-size)") from None


def _index(args) -> int:
    if args.action == "import":
        return _index_import(args)
    if args.faiss and args.faiss.endswith((".index", ".faiss")):
        raise UsageError(f"--faiss {args.faiss!r} looks like a file: building takes flat, hnsw or a FAISS factory "
                         "string; to serve an existing FAISS file use `searchr1 index import --faiss FILE`.")
    if args.faiss and args.retriever != "dense":
        raise UsageError(f"--faiss applies to --retriever dense (this is --retriever {args.retriever}); "
                         "add --retriever dense or leave --faiss out.")
    if (args.retriever == "qdrant") != bool(args.qdrant_url):
        raise UsageError("--qdrant-url goes with --retriever qdrant: pass both (a Qdrant server "
                         "http://host:6333 or a directory for the embedded mode), or neither.")
    dense = _dense_config(args, args.faiss or "flat")
    try:
        if args.retriever == "dense":  # a bad factory string fails now, not after encoding the corpus
            make_index(encoder_dim(dense), factory_spec(dense.faiss, dense.hnsw_m))
        qdrant = QdrantConfig(url=args.qdrant_url, collection=args.qdrant_collection, dense=dense) \
            if args.retriever == "qdrant" else None
        config = IndexConfig(retriever=args.retriever, bm25=BM25Config(k1=args.k1, b=args.b), dense=dense,
                             qdrant=qdrant, show_progress=True)
    except ValueError as e:
        raise UsageError(str(e)) from None
    retriever = build_index(args.corpus, args.out, config)
    print(f"indexed {len(retriever)} passages ({args.retriever}) into {args.out}")
    return 0


def _index_import(args) -> int:
    if not args.faiss:
        raise UsageError("index import needs --faiss FILE (the FAISS index, Search-R1's --index_path).")
    if not args.encoder:
        raise UsageError("index import needs --encoder (the model the index was built with, e.g. "
                         "intfloat/e5-base-v2 for Search-R1's e5_Flat.index).")
    meta = import_faiss_index(args.faiss, args.corpus, args.out, _dense_config(args))
    print(f"imported {meta['num_passages']} passages ({meta['retriever']['faiss']}, dim {meta['retriever']['dim']}) "
          f"into {args.out}; serve it with `searchr1 serve --index {args.out}`")
    return 0


def _search(args) -> int:
    if args.topk < 1:
        raise UsageError(f"--topk {args.topk}: ask for at least 1 passage.")
    results = load_retriever(args.index, _load_options(args)).search(args.query, args.topk)
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
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use a TCP port in 1-65535.")
    config = ServerConfig(default_topk=args.default_topk, max_topk=args.max_topk, max_queries=args.max_queries,
                          max_hits=args.max_hits, max_query_chars=args.max_query_chars,
                          max_body_bytes=args.max_body_bytes, max_concurrent=args.max_concurrent,
                          max_inflight_bytes=args.max_inflight_bytes, body_timeout_s=args.body_timeout,
                          chunk_queries=args.chunk_queries, batches_in_flight=args.batches_in_flight,
                          docs=args.docs)
    token = resolve_token(args.token)
    options = _load_options(args)
    cache = cache_config(args)
    rerank = RerankConfig(model=args.rerank, top_n=args.rerank_top_n)
    if args.backend == "index":
        if not args.index:
            raise UsageError("serve needs --index DIR (a local index) or --backend web:NAME (web search).")
        read_index_meta(args.index)  # a bad index fails here, before the banner
        what, web = args.index, None
    else:
        if args.index:
            raise UsageError(f"--backend {args.backend} searches the web; leave out --index {args.index}.")
        if options != LoadOptions():
            raise UsageError(f"--backend {args.backend} searches the web: --mmap, --nprobe, --ef-search, --k-factor "
                             "and --faiss-gpu apply to a local index; leave them out.")
        what = f"{args.backend} web search"
        web = WebConfig(provider=parse_backend(args.backend), base_url=args.web_base_url, qps=args.web_qps)
        resolve_endpoint(web)  # a missing key or URL fails here, before the banner
    print(f"serving {what} on http://{args.host}:{args.port}/retrieve (Ctrl-C to stop)", flush=True)
    serve(args.index, host=args.host, port=args.port, token=token, config=config, backend=args.backend,
          web=web, cache=cache, rerank=rerank, options=options)
    return 0
