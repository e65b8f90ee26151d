"""Dense memory modes: FAISS factory strings, training, nprobe/efSearch, mmap loading, GPU sharding.

Recall tests use synthetic clustered unit vectors (64-d, 10k) so they run in seconds; the floors are
set below what these seeds give (measured values in comments; chance is 3/10k).
"""
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from searchr1.search.dense import DenseConfig, DenseRetriever, LoadOptions  # noqa: E402
from searchr1.search.faiss_index import (StreamingIndexBuilder, factory_spec, make_index, read_index,  # noqa: E402
                                         search_params, set_search_params, to_gpus)
from searchr1.search.index import IndexConfig, build_index, load_retriever, read_index_meta  # noqa: E402


def clustered(n: int, d: int = 64, centres: int = 200, noise: float = 0.35, seed: int = 0) -> np.ndarray:
    """(n, d) float32 unit vectors around random unit centres (a stand-in for topical embeddings)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    x = c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def recall_at(k: int, got: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-k found in the returned top-k, averaged over queries."""
    return float(np.mean([len(set(g[:k]) & set(t[:k])) / k for g, t in zip(got, truth)]))


@pytest.fixture(scope="module")
def data():
    x = clustered(10_000)
    rng = np.random.default_rng(2)  # queries: perturbed corpus vectors (a question near its passage)
    q = x[rng.integers(0, len(x), 300)] + 0.3 * rng.standard_normal((300, x.shape[1])).astype(np.float32) / 8
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, truth = flat.search(q, 10)
    return x, q.astype(np.float32), truth


def build(spec: str, x: np.ndarray, train_size: int = 5000, chunk: int = 2000):
    builder = StreamingIndexBuilder(make_index(x.shape[1], spec), train_size)
    for s in range(0, len(x), chunk):
        builder.add(x[s:s + chunk])
    return builder.finish()


@pytest.mark.parametrize("spec, params, floor", [
    ("HNSW32", {"ef_search": 64}, 0.95),      # measured 1.00
    ("IVF64,Flat", {"nprobe": 16}, 0.95),     # measured 1.00
    ("IVF64,SQ8", {"nprobe": 16}, 0.90),      # measured 0.96 (1 byte per dimension)
    ("IVF64,PQ32", {"nprobe": 16}, 0.60),     # measured 0.69 (32 bytes for 64 floats: 8x smaller)
])
def test_ann_recall_at_3_against_flat(data, spec, params, floor):
    x, q, truth = data
    index = build(spec, x)
    assert index.ntotal == len(x) and index.is_trained
    set_search_params(index, **params)
    _, got = index.search(q, 3)
    assert recall_at(3, got, truth) >= floor, (spec, recall_at(3, got, truth))


def test_nprobe_trades_speed_for_recall_and_reaches_flat(data):
    x, q, truth = data
    index = build("IVF64,Flat", x)
    recalls = []
    for nprobe in (1, 4, 64):
        assert set_search_params(index, nprobe=nprobe) == {"nprobe": nprobe}
        recalls.append(recall_at(3, index.search(q, 3)[1], truth))
    assert recalls[0] < recalls[1] <= recalls[2] == 1.0  # nprobe = nlist is exhaustive: exactly flat


def test_search_params_reach_wrapped_levels(data):
    x, _, _ = data
    opq = build("OPQ8,IVF16,PQ8", x[:2000], train_size=2000)
    assert set_search_params(opq, nprobe=7) == {"nprobe": 7}
    ivf_hnsw = build("IVF64_HNSW16,Flat", x[:4000], train_size=4000)
    params = set_search_params(ivf_hnsw, nprobe=5, ef_search=33)
    assert params == {"nprobe": 5, "ef_search": 33}
    refine = build("IVF16,PQ8,RFlat", x[:2000], train_size=2000)
    assert set_search_params(refine, nprobe=4, k_factor=8) == {"nprobe": 4, "k_factor": 8}
    assert set_search_params(faiss.IndexFlatIP(8), nprobe=3, ef_search=3) == {}  # flat: nothing to set


def test_training_waits_for_the_sample_and_small_corpora_fail_clearly(data):
    x, _, _ = data
    builder = StreamingIndexBuilder(make_index(64, "IVF16,Flat"), train_size=2500)
    builder.add(x[:1000])
    assert builder.index.ntotal == 0 and not builder.index.is_trained  # buffered until 2500 arrived
    builder.add(x[1000:3000])
    assert builder.index.is_trained and builder.index.ntotal == 3000
    builder.add(x[3000:3500])
    assert builder.finish().ntotal == 3500
    with pytest.raises(ValueError, match="more training vectors than lists"):
        build("IVF1024,Flat", x[:300])
    with pytest.raises(ValueError, match="not a FAISS index_factory string"):
        make_index(64, "IVFX,PQ")
    assert factory_spec("flat") == "Flat" and factory_spec("hnsw", 16) == "HNSW16"
    assert factory_spec("IVF4096,PQ64") == "IVF4096,PQ64"


def _mapped(path: Path) -> bool:
    return str(path.resolve()) in Path("/proc/self/maps").read_text()


@pytest.mark.parametrize("spec", ["Flat", "IVF64,Flat", "IVF64,PQ16", "HNSW16"])  # HNSW: links are read, vectors mapped
def test_mmap_load_gives_the_in_memory_results(tmp_path, data, spec):
    x, q, _ = data
    path = tmp_path / "i.faiss"
    faiss.write_index(build(spec, x[:5000], train_size=5000), str(path))
    mem, mapped = read_index(path), read_index(path, mmap=True)
    for index in (mem, mapped):
        set_search_params(index, nprobe=8, ef_search=32)
    assert _mapped(path)  # the file is mapped, not read
    d1, i1 = mem.search(q, 5)
    d2, i2 = mapped.search(q, 5)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)


def test_dense_retriever_ivf_save_load_with_options(tmp_path, tiny_docs, minilm):
    """The whole path: build_index with a factory string, load memory-mapped with nprobe = nlist (== flat)."""
    cfg = DenseConfig(faiss="IVF2,Flat", nprobe=1, train_size=4)
    build_index(tiny_docs, tmp_path / "ivf", IndexConfig(retriever="dense", dense=cfg))
    meta = read_index_meta(tmp_path / "ivf")
    assert meta["retriever"]["faiss_spec"] == "IVF2,Flat" and meta["retriever"]["search_params"] == {"nprobe": 1}
    flat = DenseRetriever.build(tiny_docs, DenseConfig(), encoder=minilm, show_progress=False)
    queries = ["capital of Germany", "who created Python", "largest planet", "Trojan War"]
    loaded = load_retriever(tmp_path / "ivf", LoadOptions(mmap=True, nprobe=2))
    assert search_params(loaded.index) == {"nprobe": 2}
    got, want = loaded.search(queries, 3), flat.search(queries, 3)
    assert [[h.doc.id for h in r] for r in got] == [[h.doc.id for h in r] for r in want]
    assert loaded.set_search_params(nprobe=1) == {"nprobe": 1}
    with pytest.raises(ValueError, match="k_factor=0"):
        LoadOptions(k_factor=0)


def test_gpu_without_gpu_faiss_is_a_clear_error():
    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible; tests/search/test_faiss_modes.py::test_gpu_sharded_equals_cpu covers it")
    with pytest.raises(ValueError, match="FAISS sees no GPU"):
        to_gpus(faiss.IndexFlatIP(8))


@pytest.mark.gpu
def test_gpu_sharded_equals_cpu(data):
    if faiss.get_num_gpus() == 0:
        pytest.skip("needs faiss-gpu and a CUDA GPU")
    x, q, _ = data
    cpu = build("IVF64,Flat", x)
    set_search_params(cpu, nprobe=64)
    gpu = to_gpus(cpu)
    set_search_params(gpu, nprobe=64)
    _, want = cpu.search(q, 3)
    _, got = gpu.search(q, 3)
    assert recall_at(3, got, want) >= 0.99
