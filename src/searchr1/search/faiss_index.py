"""FAISS plumbing for the dense retriever: factory strings, training, search breadth, mmap, GPUs.

* :func:`factory_spec` turns ``DenseConfig.faiss`` into a FAISS ``index_factory`` string:
  ``flat`` → ``Flat``, ``hnsw`` → ``HNSW{hnsw_m}``, anything else is passed through
  (``IVF4096,PQ64``, ``OPQ64,IVF16384_HNSW32,PQ64``, ``IVF1024,SQ8``...). The metric is
  always inner product (vectors are L2-normalised: cosine).
* :class:`StreamingIndexBuilder` adds vectors chunk by chunk; an index that needs training
  keeps the first ``train_size`` vectors, trains on them, then streams the rest.
* :func:`set_search_params` sets ``nprobe`` (IVF, also under OPQ/refine wrappers) and
  ``efSearch`` (HNSW, also an IVF's HNSW quantizer) where the index has them.
* :func:`read_index` loads with ``IO_FLAG_MMAP_IFC`` when asked: FAISS then maps the codes
  (flat vectors, IVF inverted lists, PQ/SQ codes, HNSW storage) from the file instead of
  reading them. The older ``IO_FLAG_MMAP`` maps IVF lists only and silently reads a Flat or
  HNSW index whole, so it is not used (docs/retrieval.md).
* :func:`batch_flat_search_with_blas` lowers FAISS's process-wide ``distance_compute_blas_threshold``
  (128,000 queries in faiss-cpu 1.15: every realistic batch takes the one-query-at-a-time SIMD
  path) so that a batch of queries against flat codes is one matrix product; ``searchr1 serve``
  calls it (docs/benchmarks.md has the figures).
* :func:`to_gpus` clones a CPU index onto every visible GPU, sharded (each GPU holds 1/n of
  the vectors); it needs the faiss-gpu build, and HNSW has no GPU version.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ALIASES = ("flat", "hnsw")


def factory_spec(faiss_kind: str, hnsw_m: int = 32) -> str:
    """The FAISS index_factory string for ``DenseConfig.faiss``."""
    if faiss_kind == "flat":
        return "Flat"
    if faiss_kind == "hnsw":
        return f"HNSW{hnsw_m}"
    return faiss_kind


def make_index(dim: int, spec: str):
    """A new inner-product index from a factory string; a bad string is a ValueError naming it."""
    import faiss

    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        msg = " ".join(str(e).split())
        raise ValueError(f"--faiss {spec!r} is not a FAISS index_factory string ({msg[:160]}); use flat, hnsw or "
                         "a factory string such as 'HNSW32', 'IVF4096,PQ64' or 'OPQ64,IVF16384_HNSW32,PQ64' "
                         "(https://github.com/facebookresearch/faiss/wiki/The-index-factory).") from None
    for level in _walk(index):
        # the factory turns on polysemous training for PQ codes (a slow code-permutation search that only
        # helps Hamming-filtered search, which we never enable); ``PQ64np`` means the same thing
        if getattr(level, "do_polysemous_training", False):
            level.do_polysemous_training = False
    return index


class StreamingIndexBuilder:
    """Add (N, dim) float32 chunks to ``index``; train first when it needs it.

    Training waits until ``train_size`` vectors arrived (or :meth:`finish`), trains on them
    and adds them, so the corpus is still read once. The training sample is the corpus head:
    pass a shuffled corpus when its order is topical.
    """

    def __init__(self, index, train_size: int):
        self.index, self.train_size = index, train_size
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    def add(self, vectors: np.ndarray) -> None:
        if self.index.is_trained:
            self.index.add(vectors)
            return
        self._pending.append(vectors)
        self._n_pending += len(vectors)
        if self._n_pending >= self.train_size:
            self._train_and_flush()

    def finish(self):
        if self._pending:
            self._train_and_flush()
        return self.index

    def _train_and_flush(self) -> None:
        sample = np.concatenate(self._pending)
        self._pending, self._n_pending = [], 0
        try:
            self.index.train(sample[: self.train_size])
        except RuntimeError as e:
            msg = " ".join(str(e).split())
            raise ValueError(f"training the FAISS index on {min(len(sample), self.train_size)} vectors failed "
                             f"({msg[:200]}); an IVF index needs more training vectors than lists (FAISS "
                             "advises 39x): use fewer lists (e.g. IVF256 for a small corpus) or --faiss flat.") from None
        self.index.add(sample)


def _downcast(index):
    import faiss

    return faiss.downcast_index(index)


def _walk(index):
    """The index and the indexes it wraps (pre-transform, refine, IVF quantizer), outermost first."""
    seen = []
    todo = [_downcast(index)]
    while todo:
        cur = todo.pop()
        seen.append(cur)
        for attr in ("index", "base_index", "quantizer"):
            inner = getattr(cur, attr, None)
            if inner is not None and hasattr(inner, "ntotal"):
                todo.append(_downcast(inner))
    return seen


def search_params(index) -> dict[str, int]:
    """The search-breadth settings the index has now: ``nprobe`` and/or ``ef_search``."""
    out = {}
    for cur in _walk(index):
        if hasattr(cur, "nprobe") and "nprobe" not in out:
            out["nprobe"] = int(cur.nprobe)
        if hasattr(cur, "hnsw") and "ef_search" not in out:
            out["ef_search"] = int(cur.hnsw.efSearch)
        if hasattr(cur, "k_factor") and "k_factor" not in out:
            out["k_factor"] = int(cur.k_factor)
    return out


def set_search_params(index, nprobe: int | None = None, ef_search: int | None = None,
                      k_factor: int | None = None) -> dict[str, int]:
    """Set ``nprobe`` on every IVF level, ``efSearch`` on every HNSW level and ``k_factor`` (candidates
    re-scored exactly = k_factor * k) on a refine level (``...,RFlat``), where the index has them.

    A setting the index has no use for is ignored (a Flat index has neither); returns
    :func:`search_params` after the change. GPU indexes go through ``GpuParameterSpace``.
    """
    import faiss

    if nprobe is not None and nprobe < 1 or ef_search is not None and ef_search < 1:
        raise ValueError(f"nprobe={nprobe}, ef_search={ef_search}: both must be >= 1.")
    if _is_gpu(index):
        space = faiss.GpuParameterSpace()
        space.initialize(index)
        if nprobe is not None:
            space.set_index_parameter(index, "nprobe", nprobe)
        return {"nprobe": nprobe} if nprobe is not None else {}
    for cur in _walk(index):
        if nprobe is not None and hasattr(cur, "nprobe"):
            cur.nprobe = nprobe
        if ef_search is not None and hasattr(cur, "hnsw"):
            cur.hnsw.efSearch = ef_search
        if k_factor is not None and hasattr(cur, "k_factor"):
            cur.k_factor = k_factor
    return search_params(index)


def _is_gpu(index) -> bool:
    return type(index).__name__.startswith("Gpu") or type(index).__name__ == "IndexShards"


BLAS_MIN_QUERIES = 8
"""Batches of at least this many queries go through BLAS: below it the SIMD scan is faster (one
query: 1.3 ms against 6 ms over 20k × 384; eight: 9.8 ms against 5.5 ms)."""


def batch_flat_search_with_blas(min_queries: int = BLAS_MIN_QUERIES) -> int:
    """Make flat (exhaustive) searches of ``min_queries`` or more queries use BLAS, for the whole
    process; returns the previous threshold. The scores agree with the SIMD path to float rounding."""
    import faiss

    previous = int(faiss.cvar.distance_compute_blas_threshold)
    faiss.cvar.distance_compute_blas_threshold = min_queries
    return previous


def read_index(path: str | Path, mmap: bool = False):
    """Load a FAISS file; with ``mmap`` its flat codes / inverted lists stay on disk (page cache)."""
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as e:
        raise ValueError(f"{path}: cannot read the FAISS index ({' '.join(str(e).split())[:200]}); "
                         "rebuild it with `searchr1 index --retriever dense`.") from None


def to_gpus(index, fp16: bool = False):
    """``index`` cloned onto every visible GPU, sharded; a clear error without GPU FAISS."""
    import faiss

    n = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if n == 0:
        raise ValueError("--faiss-gpu: FAISS sees no GPU (this is the faiss-cpu build, or CUDA is unavailable); "
                         "install faiss-gpu on a CUDA machine, or leave --faiss-gpu off.")
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    options.useFloat16 = fp16
    try:
        return faiss.index_cpu_to_all_gpus(index, co=options, ngpu=n)
    except RuntimeError as e:
        raise ValueError(f"--faiss-gpu: FAISS cannot move a {type(_downcast(index)).__name__} to the GPU "
                         f"({' '.join(str(e).split())[:160]}); GPU FAISS serves Flat, IVF-Flat/PQ/SQ indexes, "
                         "not HNSW.") from None
