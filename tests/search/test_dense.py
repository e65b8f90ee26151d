import numpy as np
import pytest

from searchr1.search.dense import BGE_QUERY_INSTRUCTION, DenseConfig, DenseRetriever, Encoder, bundled_minilm_path
from searchr1.search.index import IndexConfig, build_index, load_retriever, read_index_meta


@pytest.fixture(scope="module")
def dense(tiny_docs, minilm):
    return DenseRetriever.build(tiny_docs, minilm.config, encoder=minilm, show_progress=False)


def test_bundled_encoder_is_found():
    assert (bundled_minilm_path() / "model.safetensors").is_file()


def test_embeddings_are_unit_norm_and_batch_independent(minilm):
    texts = ["a short one", "a much longer sentence about mountains, rivers and the sea", "x"]
    together = minilm.encode(texts, batch_size=3)
    alone = np.stack([minilm.encode([t])[0] for t in texts])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)  # padding does not leak into the pooled vector


def test_finds_known_neighbours(dense):
    queries = ["Who created the Python language?", "tallest mountain on the planet",
               "how do plants make energy from sunlight", "biggest planet in our solar system"]
    results = dense.search(queries, topk=2)
    tops = [hits[0].doc.title for hits in results]
    assert tops[1:] == ["Mount Everest", "Photosynthesis", "Jupiter"]
    assert tops[0] in ("Python (programming language)", "Guido van Rossum")
    for hits in results:
        assert hits[0].score >= hits[1].score and -1.0 <= hits[1].score <= 1.0


def test_prefix_conventions():
    assert DenseConfig(encoder="intfloat/e5-base-v2").resolved_prefix() == "e5"
    assert DenseConfig(encoder="BAAI/bge-small-en-v1.5").resolved_prefix() == "bge"
    assert DenseConfig().resolved_prefix() == "none"
    with pytest.raises(ValueError, match="prefix"):
        DenseConfig(prefix="instructor")
    with pytest.raises(ValueError, match="faiss"):  # any factory string is accepted, but not spaces
        DenseConfig(faiss="IVF64, PQ8")


def test_e5_prefix_changes_query_vectors(minilm):
    e5 = Encoder.__new__(Encoder)
    e5.__dict__.update(minilm.__dict__)
    e5.query_prefix, e5.passage_prefix = "query: ", "passage: "
    a, b = minilm.encode_queries(["capital of France"]), e5.encode_queries(["capital of France"])
    assert not np.allclose(a, b)
    np.testing.assert_allclose(b, minilm.encode(["query: capital of France"]), atol=1e-6)
    assert BGE_QUERY_INSTRUCTION.startswith("Represent this sentence")


def test_build_hnsw_save_load(tmp_path, tiny_docs, minilm, dense):
    cfg = IndexConfig(retriever="dense", dense=DenseConfig(faiss="hnsw", hnsw_m=8))
    import searchr1.search.dense as D

    built = D.DenseRetriever.build(tiny_docs, cfg.dense, encoder=minilm, show_progress=False)
    q = ["tallest mountain on the planet", "capital of Germany"]
    assert [h[0].doc.title for h in built.search(q, 1)] == [h[0].doc.title for h in dense.search(q, 1)]
    out = tmp_path / "dense"
    build_index(tiny_docs, out, IndexConfig(retriever="dense"))
    meta = read_index_meta(out)
    assert meta["kind"] == "dense" and meta["retriever"]["dim"] == 384 and meta["num_passages"] == len(tiny_docs)
    loaded, expected = load_retriever(out).search(q, 3), dense.search(q, 3)
    assert [[h.doc for h in r] for r in loaded] == [[h.doc for h in r] for r in expected]
    assert [h.score for r in loaded for h in r] == pytest.approx([h.score for r in expected for h in r], abs=1e-5)
