"""Scale curves: BM25 and FAISS indexes at 100k, 1M and 5M passages (opt-in: ``make bench B=scale``; ~1 h on 2 shared cores).

Parts (``SCALE_PARTS``, default ``bm25,dense,real``; sizes ``BENCH_SCALE_SIZES`` or ``SCALE_SIZES``, default
``100k,1m``, e.g. ``BENCH_SCALE_SIZES=100k,1m,5m``):

* ``bm25``: the real build path (``build_index``) over synthetic Zipf passages (100 words,
  50k-word vocabulary, stopwords as the head: ``synthetic_corpus``), generated in 100k chunks so the
  corpus is never held whole; then batched top-3 q/s (1000-query batches, 5-word queries from
  random passages) loaded in memory and memory-mapped, and the process's anonymous RSS for each.
* ``dense``: synthetic clustered unit vectors (MiniLM's 384 dimensions; 1 centre per 100 passages,
  noise 0.35 around it, generated in chunks, never held whole) in Flat / HNSW32 (100k only: its
  build is the slow part) / IVF-PQ indexes; recall@3 against exact inner product over the same
  vectors (200 queries = perturbed corpus vectors) at several nprobe; q/s is FAISS search alone on
  one thread (query encoding is separate: ``make bench B=search``). Indexes that hold the raw
  vectors (Flat, ``RFlat``) are left out above ``RAW_VECTORS_MAX_MB`` (5M × 384 fp32 = 7.3 GiB);
  the exact reference is then still computed, streamed over the chunks in bounded memory.
  IVF lists: 256 up to 100k, 1024 up to 1M, 2048 beyond (trained on 39 vectors per list).
  Flat searches of batches go through BLAS (``batch_flat_search_with_blas``: IVF training and
  assignment are flat searches too).
* ``real``: MiniLM embeddings of 10k wiki passages (first 32 tokens, to keep encoding to minutes on
  2 cores) with queries of 5 words from random passages: the same index types, recall@3 vs flat.

Figures and the 21M extrapolation: docs/retrieval.md. Each result is also appended as a JSON line to
``$SCALE_OUT`` (default ``runs/bench_scale.jsonl``).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
OUT = Path(os.environ.get("SCALE_OUT", "runs/bench_scale.jsonl"))
RAW_VECTORS_MAX_MB = 3000
"""Largest raw-vector index (n × DIM × 4 bytes) built: the machine is shared (keep RSS < ~4-8 GB)."""


def parse_sizes(text: str) -> list[int]:
    """``"100k,1m,5m"`` (or plain integers) → passage counts."""
    scale = {"k": 1_000, "m": 1_000_000}
    out = []
    for part in text.lower().replace(" ", "").split(","):
        try:
            out.append(int(float(part[:-1]) * scale[part[-1]]) if part[-1:] in scale else int(part))
        except (ValueError, IndexError):
            raise ValueError(f"scale size {part!r}: use a count like 100000, 100k or 5m") from None
    return out


def _bench(name: str, value: float, unit: str) -> None:
    print(f"BENCH {name} {value:.4g} {unit}", flush=True)


def _record(**row) -> None:
    print("  " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps({**row, "date": time.strftime("%Y-%m-%d %H:%M")}) + "\n")


def _rss_mb() -> dict[str, float]:
    """Anonymous (heap) and file-backed (mapped files) resident memory of this process, MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:", "VmHWM:")):
            name, value = line.split(":")
            fields[name] = int(value.split()[0]) / 1024
    return fields


def _reset_peak_rss() -> None:
    """Reset the process's peak RSS (VmHWM) so the next reading is the peak of what follows (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as e:
        print(f"  note: cannot reset the peak RSS ({e}); build peaks include earlier steps", flush=True)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _label(n: int) -> str:
    return f"{n // 1_000_000}m" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


# ---- BM25 --------------------------------------------------------------------------------------
def _zipf_docs(n: int, chunk: int = 100_000):
    from searchr1.search.base import Document
    from searchr1.search.corpus_build import synthetic_corpus

    for c, start in enumerate(range(0, n, chunk)):
        for d in synthetic_corpus(min(chunk, n - start), seed=1000 + c):
            yield Document(str(start + int(d.id)), d.title, d.text)


def bench_bm25(n: int, work: Path) -> None:
    from searchr1.search.dense import LoadOptions
    from searchr1.search.index import IndexConfig, build_index, load_retriever

    out = work / f"bm25_{n}"
    _reset_peak_rss()  # this size's build peak, not an earlier size's
    t0, c0 = time.perf_counter(), time.process_time()
    built = build_index(_zipf_docs(n), out, IndexConfig(retriever="bm25"))
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _rss_mb()["VmHWM"]
    del built
    rng = random.Random(1)
    sample = [d for i, d in enumerate(_zipf_docs(min(n, 100_000))) if i % 50 == 0]
    queries = [" ".join(rng.sample(d.text.split(), 5)) for d in rng.choices(sample, k=3000)]
    for mode in ("memory", "mmap"):
        before = _rss_mb()
        r = load_retriever(out, LoadOptions(mmap=mode == "mmap"))
        r.search_indices(queries[:200], 3)  # warm-up: numba kernel, page cache
        after = _rss_mb()
        t, c = time.perf_counter(), time.process_time()
        for s in range(0, len(queries), 1000):
            r.search_indices(queries[s:s + 1000], 3)
        qps, cpu_qps = len(queries) / (time.perf_counter() - t), len(queries) / (time.process_time() - c)
        _record(part="bm25", n=n, mode=mode, build_s=round(build_s, 1), build_cpu_s=round(build_cpu, 1),
                build_peak_rss_mb=round(peak), index_mb=round(_dir_bytes(out / "bm25s") / 2**20),
                docs_mb=round(_dir_bytes(out) / 2**20 - _dir_bytes(out / "bm25s") / 2**20),
                rss_anon_mb=round(after["RssAnon"] - before["RssAnon"]),
                rss_file_mb=round(after["RssFile"] - before["RssFile"]), qps=round(qps), qps_per_cpu_s=round(cpu_qps))
        if mode == "memory":
            _bench(f"bm25_qps_{_label(n)}", qps, "q/s")
        del r
    shutil.rmtree(out)


# ---- dense -------------------------------------------------------------------------------------
def _clustered_chunks(n: int, chunk: int = 50_000, seed: int = 0):
    """Deterministic (≤chunk, DIM) float32 unit vectors around n/100 random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 100, 1), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for c, start in enumerate(range(0, n, chunk)):
        r = np.random.default_rng(seed * 7919 + c + 1)
        m = min(chunk, n - start)
        x = centres[r.integers(0, len(centres), m)] + 0.35 * r.standard_normal((m, DIM)).astype(np.float32) / np.sqrt(DIM)
        yield (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _exact_top(chunks, q: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact inner-product top-k ids over streamed chunks (the flat reference)."""
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    start = 0
    for x in chunks:
        s = q @ x.T
        cand = np.argpartition(-s, k - 1, axis=1)[:, :k]  # the chunk's top k (unordered), then merge
        all_s = np.concatenate([best_s, np.take_along_axis(s, cand, 1)], 1)
        all_i = np.concatenate([best_i, cand + start], 1)
        top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
        start += len(x)
    return best_i


def _recall3(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g[:3]) & set(t[:3])) / 3 for g, t in zip(got, truth)]))


def _measure(index, spec: str, n: int, q, truth, build_s: float, part: str, sweep, work: Path) -> dict:
    from searchr1.search.faiss_index import read_index, set_search_params

    path = work / "i.faiss"
    import faiss

    faiss.write_index(index, str(path))
    size = path.stat().st_size
    best = {}
    for mode in ("memory", "mmap"):
        before = _rss_mb()
        loaded = read_index(path, mmap=mode == "mmap")
        rss = _rss_mb()["RssAnon"] - before["RssAnon"]
        for params in sweep if mode == "memory" else sweep[-1:]:
            set_search_params(loaded, **params)
            loaded.search(q[:20], 3)
            t = time.perf_counter()
            _, got = loaded.search(q, 3)
            qps = len(q) / (time.perf_counter() - t)
            rec = _recall3(got, truth)
            _record(part=part, n=n, spec=spec, mode=mode, **params, build_s=round(build_s, 1),
                    index_mb=round(size / 2**20, 1), bytes_per_vector=round(size / n), rss_anon_mb=round(rss),
                    qps_1thread=round(qps), recall_at3=round(rec, 4))
            if mode == "memory":
                best = {"recall": rec, "qps": qps, **params}
        del loaded
    path.unlink()
    return best


def _build(spec: str, chunks, train_size: int):
    from searchr1.search.faiss_index import StreamingIndexBuilder, make_index

    t = time.perf_counter()
    builder = StreamingIndexBuilder(make_index(DIM, spec), train_size)
    for x in chunks:
        builder.add(x)
    return builder.finish(), time.perf_counter() - t


def bench_dense(n: int, work: Path) -> None:
    rng = np.random.default_rng(5)
    picks = np.sort(rng.choice(n, 200, replace=False))
    q, start = [], 0
    for x in _clustered_chunks(n):  # queries: perturbed corpus vectors (a question near its passage)
        q.extend(x[picks[(picks >= start) & (picks < start + len(x))] - start])
        start += len(x)
    q = np.stack(q) + 0.1 * rng.standard_normal((200, DIM)).astype(np.float32) / np.sqrt(DIM)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    t = time.perf_counter()
    truth = _exact_top(_clustered_chunks(n), q)
    print(f"  exact top-10 of 200 queries over {n:,} vectors (streamed): {time.perf_counter() - t:.0f}s", flush=True)
    nlist = 256 if n <= 100_000 else 1024 if n <= 1_000_000 else 2048
    raw_fits = n * DIM * 4 / 2**20 <= RAW_VECTORS_MAX_MB
    specs = [(f"IVF{nlist},PQ128", [{"nprobe": p} for p in ((8, 32) if n <= 1_000_000 else (8, 32, 128))])]
    if raw_fits:
        specs = [("Flat", [{}]), *specs, (f"IVF{nlist},PQ128,RFlat", [{"nprobe": 32, "k_factor": f} for f in (4, 16)])]
    else:
        print(f"  Flat and RFlat left out: {n * DIM * 4 / 2**30:.1f} GiB of raw vectors > {RAW_VECTORS_MAX_MB} MB",
              flush=True)
    if n <= 100_000:
        specs.insert(1, ("HNSW32", [{"ef_search": e} for e in (32, 128)]))
    for spec, sweep in specs:
        index, build_s = _build(spec, _clustered_chunks(n), train_size=max(20_000, 39 * nlist))
        best = _measure(index, spec, n, q, truth, build_s, "dense", sweep, work)
        del index
        if spec == f"IVF{nlist},PQ128" and n >= 1_000_000:
            _bench(f"dense_ivfpq_recall_at3_{_label(n)}", best["recall"], f"(IVF{nlist},PQ128 nprobe {best['nprobe']})")


def bench_real(work: Path, n: int = 10_000) -> None:
    """MiniLM vectors of real wiki passages (first 32 tokens) — the synthetic vectors' sanity check."""
    from searchr1.search.corpus_build import iter_wiki_passages
    from searchr1.search.dense import DenseConfig, Encoder

    docs = [d for _, d in zip(range(n), iter_wiki_passages())]
    enc = Encoder(DenseConfig(max_length=32, batch_size=128))
    t = time.perf_counter()
    x = enc.encode_passages(docs)
    rng = random.Random(3)
    q = enc.encode_queries([" ".join(rng.sample(d.text.split(), 5)) for d in rng.sample(docs, 200)])
    print(f"  encoded {len(docs)} passages (32 tokens) in {time.perf_counter() - t:.0f}s", flush=True)
    truth = _exact_top([x], q)
    for spec, sweep in [("HNSW32", [{"ef_search": 32}, {"ef_search": 128}]),
                        ("IVF100,PQ128", [{"nprobe": p} for p in (8, 32, 100)]),
                        ("IVF100,PQ128,RFlat", [{"nprobe": 32, "k_factor": f} for f in (4, 16)])]:
        index, build_s = _build(spec, [x], train_size=len(x))
        _measure(index, spec, len(x), q, truth, build_s, "real-minilm", sweep, work)


def table(path: Path = OUT) -> str:
    """The JSON lines of a run as the markdown table in docs/retrieval.md."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = ["| part | N | index | load | params | build s | index MB | B/passage | anon RSS MB | q/s | recall@3 |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = " ".join(f"{k}={r[k]}" for k in ("nprobe", "ef_search", "k_factor") if k in r)
        bpp = r.get("bytes_per_vector", round(r.get("index_mb", 0) * 2**20 / r["n"]))
        out.append(f"| {r['part']} | {r['n']:,} | {r.get('spec', 'BM25')} | {r['mode']} | {params} | {r['build_s']} | "
                   f"{r['index_mb']} | {bpp} | {r['rss_anon_mb']} | {r.get('qps', r.get('qps_1thread'))} | "
                   f"{r.get('recall_at3', 'exact')} |")
    return "\n".join(out)


def main() -> None:
    import faiss

    from searchr1.search.faiss_index import batch_flat_search_with_blas

    faiss.omp_set_num_threads(1)  # q/s per thread: the machine is shared
    batch_flat_search_with_blas()
    parts = os.environ.get("SCALE_PARTS", "bm25,dense,real").split(",")
    sizes = parse_sizes(os.environ.get("BENCH_SCALE_SIZES") or os.environ.get("SCALE_SIZES", "100k,1m"))
    with tempfile.TemporaryDirectory(prefix="searchr1-scale-") as tmp:
        work = Path(tmp)
        if "real" in parts:
            bench_real(work, int(os.environ.get("SCALE_REAL_N", "10000")))
        for n in sizes:
            if "bm25" in parts:
                bench_bm25(n, work)
            if "dense" in parts:
                bench_dense(n, work)


if __name__ == "__main__":
    import sys

    print(table(Path(sys.argv[2])) if sys.argv[1:2] == ["--table"] else main())
