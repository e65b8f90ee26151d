"""The serving encoder's fast modes give the fp32 encoder's answers: worker threads (same vectors),
bf16 weights (cosine >= 0.999 against fp32), flat search through BLAS (same neighbours), and
``searchr1 serve`` picks them for dense indexes only."""
import itertools

import numpy as np
import pytest

from searchr1.search.corpus_build import iter_wiki_passages
from searchr1.search.dense import DenseConfig, Encoder, LoadOptions, cpu_has_bf16
from searchr1.search.faiss_index import batch_flat_search_with_blas, make_index
from searchr1.search.index import IndexConfig, build_index
from searchr1.search.server import _server_load_options


@pytest.fixture
def keep_torch_threads():
    """Encoder(workers >= 1) sets torch to one intra-op thread for the process: put it back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def wiki_texts():
    docs = list(itertools.islice(iter_wiki_passages(100), 40))
    queries = [" ".join(d.text.split()[3:8]) for d in docs[:20]] + ["x", "who wrote the iliad"]
    return queries, [f"{d.title}. {d.text}" for d in docs]


def test_worker_threads_give_the_same_vectors(minilm, wiki_texts, keep_torch_threads):
    import torch

    queries, passages = wiki_texts
    threaded = Encoder(DenseConfig(), workers=2)
    assert torch.get_num_threads() == 1
    for texts, bs in ((queries, len(queries)), (passages, 8)):  # one share per worker; many batches
        np.testing.assert_allclose(threaded.encode(texts, batch_size=bs), minilm.encode(texts, batch_size=bs),
                                   atol=2e-5)


def test_bf16_encoder_matches_fp32(minilm, wiki_texts, keep_torch_threads):
    queries, passages = wiki_texts
    bf16 = Encoder(DenseConfig(), dtype="bf16")
    for texts in (queries, passages):
        got, ref = bf16.encode(texts), minilm.encode(texts)
        assert got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
        cosines = (got * ref).sum(1)
        assert cosines.min() >= 0.999, cosines.min()
        assert cosines.min() < 1.0 - 1e-7  # bf16 weights really are in use: not bit-identical to fp32


def test_bad_encoder_settings_are_value_errors():
    with pytest.raises(ValueError, match="workers=-1"):
        Encoder(DenseConfig(), workers=-1)
    with pytest.raises(ValueError, match="fp16"):
        LoadOptions(encoder_dtype="fp16")
    with pytest.raises(ValueError, match="encoder_workers=-2"):
        LoadOptions(encoder_workers=-2)


@pytest.mark.parametrize("flags, expected", [("fpu vme amx_bf16 amx_tile", True), ("fpu avx512f avx512_bf16", True),
                                             ("fpu avx2 avx512f", False)])
def test_cpu_has_bf16_reads_the_flags(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_has_bf16(info) is expected
    assert cpu_has_bf16(tmp_path / "missing") is False


def test_flat_search_through_blas_finds_the_same_neighbours():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3000, 32)).astype(np.float32)
    queries = rng.standard_normal((40, 32)).astype(np.float32)
    index = make_index(32, "Flat")
    index.add(base)
    simd_scores, simd_ids = index.search(queries, 5)
    previous = batch_flat_search_with_blas(8)
    try:
        blas_scores, blas_ids = index.search(queries, 5)
    finally:
        batch_flat_search_with_blas(previous)
    np.testing.assert_array_equal(blas_ids, simd_ids)
    np.testing.assert_allclose(blas_scores, simd_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(blas_ids[:, 0], np.argmax(queries @ base.T, axis=1))


def test_serve_picks_the_fast_encoder_for_dense_indexes_only(tmp_path, tiny_docs, monkeypatch):
    dense_dir, bm25_dir = tmp_path / "dense", tmp_path / "bm25"
    build_index(tiny_docs, dense_dir, IndexConfig(retriever="dense"))
    build_index(tiny_docs, bm25_dir, IndexConfig(retriever="bm25"))
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    picked = _server_load_options("index", dense_dir, None)
    assert picked.encoder_workers == 6
    assert picked.encoder_dtype == ("bf16" if cpu_has_bf16() else "fp32")
    kept = _server_load_options("index", dense_dir, LoadOptions(encoder_workers=0, encoder_dtype="fp32"))
    assert (kept.encoder_workers, kept.encoder_dtype) == (0, "fp32")
    assert _server_load_options("index", bm25_dir, None) == LoadOptions()
    assert _server_load_options("web:serper", None, None) == LoadOptions()
