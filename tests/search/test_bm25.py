import json
import math
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from searchr1.search import bm25_kernels as K
from searchr1.search.base import Document
from searchr1.search.bm25 import BM25Config, BM25Retriever, Tokenizer, passage_text
from searchr1.search.index import IndexConfig, build_index, load_retriever, read_index_meta, save_index


@pytest.fixture(scope="module")
def random_corpus():
    rng = random.Random(0)
    vocab = [f"term{i}" for i in range(300)]
    docs = [Document(str(i), "", " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 25)))) for i in range(80)]
    docs += [Document("dup-a", "", "term1 term2 term3"), Document("dup-b", "", "term1 term2 term3")]  # exact ties
    queries = [" ".join(rng.sample(vocab, rng.randint(1, 4))) for _ in range(60)] + ["term1 term2"]
    return docs, queries


def _reference_rank(scores: np.ndarray, k: int) -> list[int]:
    cand = [i for i in range(len(scores)) if scores[i] > 0]
    return sorted(cand, key=lambda i: (-scores[i], i))[:k]


def test_matches_rank_bm25_okapi(random_corpus):
    """bm25s 'robertson' = Okapi BM25 without the constant (k1+1) factor."""
    docs, queries = random_corpus
    cfg = BM25Config(k1=1.5, b=0.75, method="robertson")
    ours = BM25Retriever.build(docs, cfg)
    tok = Tokenizer(cfg.stemmer, cfg.stopwords)
    ref = BM25Okapi([tok(passage_text(d)) for d in docs], k1=1.5, b=0.75)
    assert min(ref.idf.values()) > 0  # no rank_bm25 epsilon floor in play: the formulas agree exactly
    results = ours.search(queries, topk=5)
    for q, hits in zip(queries, results):
        ref_scores = ref.get_scores(tok(q))
        expected = _reference_rank(ref_scores, 5)
        assert [docs.index(h.doc) for h in hits] == expected
        for h, i in zip(hits, expected):
            assert h.score * (cfg.k1 + 1) == pytest.approx(ref_scores[i], rel=1e-5)


def test_lucene_default_matches_hand_computed():
    docs = [Document("0", "", "cat sat mat"), Document("1", "", "cat cat dog"), Document("2", "", "dog bird")]
    r = BM25Retriever.build(docs, BM25Config(stemmer=None, stopwords=None))  # k1=0.9, b=0.4, lucene
    k1, b, n = 0.9, 0.4, 3
    avgdl = 8 / 3

    def term(tf, dl, df):
        return math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * dl / avgdl))

    hits = r.search(["cat dog"], topk=3)[0]
    expected = {"0": term(1, 3, 2), "1": term(2, 3, 2) + term(1, 3, 2), "2": term(1, 2, 2)}
    assert [h.doc.id for h in hits] == sorted(expected, key=lambda i: -expected[i])
    for h in hits:
        assert h.score == pytest.approx(expected[h.doc.id], rel=1e-5)


def test_numba_kernel_equals_exhaustive_numpy(random_corpus):
    docs, queries = random_corpus
    fast = BM25Retriever.build(docs * 3)  # repeated passages → many exact ties
    slow = BM25Retriever(fast.model, fast.docs, BM25Config(backend="numpy"))
    many = queries * 2  # >= 64 queries → the parallel chunked path
    for k in (1, 3, 10):
        i1, s1 = fast.search_indices(many, k)
        i2, s2 = slow.search_indices(many, k)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)  # bit-identical, not just close


def test_kernels_agree_when_idf_is_zero():
    """Robertson idf is clamped to 0 for terms in over half the passages: zero postings."""
    rng = random.Random(1)
    docs = [Document(str(i), "", " ".join(rng.choice("ab cd ef gh ij".split()) for _ in range(6))) for i in range(40)]
    fast = BM25Retriever.build(docs, BM25Config(method="robertson", stemmer=None))
    slow = BM25Retriever(fast.model, fast.docs, BM25Config(method="robertson", stemmer=None, backend="numpy"))
    assert (fast._data == 0).any()
    queries = ["ab", "ab cd", "ij gh ef", "cd cd"] * 20
    for k in (1, 5, 40):
        i1, s1 = fast.search_indices(queries, k)
        i2, s2 = slow.search_indices(queries, k)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)


def test_ties_break_by_corpus_index(random_corpus):
    docs, _ = random_corpus
    r = BM25Retriever.build(docs)
    hits = r.search(["term1 term2 term3"], topk=2)[0]
    assert [h.doc.id for h in hits] == ["dup-a", "dup-b"]
    assert hits[0].score == hits[1].score
    top1 = r.search(["term1 term2 term3"], topk=1)[0]
    assert [h.doc.id for h in top1] == ["dup-a"]


def test_queries_without_indexable_terms_return_no_hits(tiny_bm25):
    results = tiny_bm25.search(["", "the of and", "zzzunknownzzz", "!!! ???", "capital of France"], topk=3)
    assert results[:4] == [[], [], [], []]
    assert results[4][0].doc.title == "Paris"


def test_fewer_matches_than_topk(tiny_bm25):
    hits = tiny_bm25.search(["Himalayas"], topk=5)[0]
    assert [h.doc.title for h in hits] == ["Mount Everest"]
    assert tiny_bm25.search([], topk=3) == []
    with pytest.raises(ValueError, match="topk"):
        tiny_bm25.search(["x"], topk=0)


def test_stemming_and_title_are_indexed(tiny_bm25):
    assert tiny_bm25.search(["converting plants"], topk=1)[0][0].doc.title == "Photosynthesis"
    assert tiny_bm25.search(["Jupiter"], topk=1)[0][0].doc.id == "d5"


def test_build_index_save_load_roundtrip(tmp_path, tiny_docs):
    from searchr1.search.corpus import write_corpus_jsonl

    corpus = tmp_path / "c.jsonl"
    write_corpus_jsonl(tiny_docs, corpus)
    built = build_index(corpus, tmp_path / "idx", IndexConfig(retriever="bm25"))
    loaded = load_retriever(tmp_path / "idx")
    queries = ["python creator", "largest planet", "capital city"]
    assert loaded.search(queries, 3) == built.search(queries, 3)
    assert loaded.search(queries, 3)[0][0].doc == tiny_docs[7] or loaded.search(queries, 3)[0][0].doc == tiny_docs[2]
    meta = read_index_meta(tmp_path / "idx")
    assert meta["kind"] == "bm25" and meta["num_passages"] == len(tiny_docs)
    assert meta["retriever"]["k1"] == 0.9 and meta["corpus"]["path"] == str(corpus)
    # the checksum identifies the corpus content
    write_corpus_jsonl(tiny_docs[:-1], corpus)
    build_index(corpus, tmp_path / "idx2")
    assert read_index_meta(tmp_path / "idx2")["corpus"]["sha256"] != meta["corpus"]["sha256"]


def test_save_of_an_in_memory_index_is_complete(tmp_path, tiny_bm25, tiny_docs):
    save_index(tiny_bm25, tmp_path / "saved")
    loaded = load_retriever(tmp_path / "saved")
    queries = ["python creator", "largest planet", "the of"]
    assert loaded.search(queries, 3) == tiny_bm25.search(queries, 3)
    assert [loaded.docs[i] for i in range(len(loaded))] == tiny_docs
    assert read_index_meta(tmp_path / "saved")["corpus"]["path"] is None


def test_load_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="searchr1 index"):
        load_retriever(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format": 1, "kind": "tfidf"}))
    with pytest.raises(ValueError, match="unknown index kind"):
        load_retriever(tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="k1"):
        BM25Config(k1=-1)
    with pytest.raises(ValueError, match="method"):
        BM25Config(method="bm25+")
    with pytest.raises(ValueError, match="retriever"):
        IndexConfig(retriever="splade")


def test_term_max_and_sorted_postings():
    data = np.array([1.0, 3.0, 2.0, 5.0], dtype=np.float32)
    indptr = np.array([0, 2, 2, 4])
    np.testing.assert_array_equal(K.term_max_scores(data, indptr), [3.0, 0.0, 5.0])
    assert K.postings_sorted(np.array([0, 4, 1, 2]), indptr)
    assert not K.postings_sorted(np.array([4, 0, 1, 2]), indptr)


from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(list("abcXYZéü 19_-.,'\n") + ["the ", "Running ", "ÉCOLE "]), max_size=30).map("".join))
def test_index_and_query_tokenization_agree(text):
    """Passages (fast path, one lookup per surface word) and queries are tokenized alike."""
    tok = Tokenizer()
    r = BM25Retriever.build([Document("0", "", text), Document("1", "", "zz")])
    assert set(r.model.vocab_dict) == set(tok(text)) | {"zz"}
    if tok(text):
        assert r.search([text], 1)[0][0].doc.id == "0"


def test_mmap_load_gives_identical_results(tmp_path):
    """Memory-mapped BM25 (score matrix left on disk) == in-memory, on a 3k-passage Zipf corpus."""
    from pathlib import Path

    from searchr1.search.corpus_build import synthetic_corpus
    from searchr1.search.dense import LoadOptions

    docs = synthetic_corpus(3000, words=40, seed=3, vocab_size=2000)
    build_index(docs, tmp_path / "idx", IndexConfig(retriever="bm25"))
    mem = load_retriever(tmp_path / "idx")
    mapped = load_retriever(tmp_path / "idx", LoadOptions(mmap=True))
    data_file = next((tmp_path / "idx" / "bm25s").glob("data*.npy")).resolve()
    assert str(data_file) in Path("/proc/self/maps").read_text()  # the matrix is mapped, not read
    assert isinstance(mapped.model.scores["data"], np.memmap)
    for name in ("data", "indices"):  # the kernel's arrays are views of the mapping, not copies
        assert np.shares_memory(getattr(mapped, "_" + name), mapped.model.scores[name]), name
    rng = random.Random(1)
    queries = [" ".join(rng.sample(d.text.split(), 4)) for d in rng.sample(docs, 400)] + ["the of and", "zzzz"]
    for k in (1, 3, 10):
        i1, s1 = mem.search_indices(queries, k)
        i2, s2 = mapped.search_indices(queries, k)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(s1, s2)
    assert mapped.search(queries[:50], 3) == mem.search(queries[:50], 3)


# ---- the streaming score-matrix build == bm25s' own index() -------------------------------------
def _bm25s_reference(docs, retriever):
    """bm25s.BM25.index over the same term ids and vocabulary as ``retriever`` (bm25s' own code path)."""
    import bm25s

    cfg = retriever.config
    ids = [[retriever._vocab[t] for t in retriever.tokenizer(passage_text(d))] for d in docs]
    ref = bm25s.BM25(k1=cfg.k1, b=cfg.b, method=cfg.method, backend="numpy")
    ref.index((ids, dict(retriever.model.vocab_dict)), create_empty_token=False, show_progress=False)
    return ref, ids


def _assert_same_matrix(scores, ref_scores):
    for name in ("data", "indices", "indptr"):
        got, want = np.asarray(scores[name]), np.asarray(ref_scores[name])
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)  # bit-identical, not just close
    assert scores["num_docs"] == ref_scores["num_docs"]


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_streaming_build_equals_bm25s_index(tmp_path, method):
    """Same CSC arrays as bm25s' index() (one chunk and many), same top-k, same results memory-mapped."""
    from searchr1.search.bm25_matrix import ScoreMatrixBuilder
    from searchr1.search.corpus_build import synthetic_corpus
    from searchr1.search.dense import LoadOptions

    docs = synthetic_corpus(1500, words=30, seed=7, vocab_size=600)
    docs = [Document(d.id, d.title, d.text + " ubiquitous") if i % 5 else d for i, d in enumerate(docs)]
    docs.append(Document("empty", "", "the of and"))  # a passage of stopwords only: length 0
    cfg = BM25Config(k1=1.2, b=0.75, method=method)
    ours = BM25Retriever.build(docs, cfg)
    ref, ids = _bm25s_reference(docs, ours)
    _assert_same_matrix(ours.model.scores, ref.scores)
    assert (ours._data == 0).any() == (method == "robertson")  # robertson's clamped idf is exercised

    for spill_dir in (None, tmp_path):  # chunks kept in memory / in a temporary file
        chunked = ScoreMatrixBuilder(chunk_tokens=700, spill_dir=spill_dir)  # ~30 chunks
        rng = random.Random(0)
        for row in ids:  # -1 tokens (stopwords) are skipped
            chunked.add([t for i in row for t in ((i, -1) if rng.random() < 0.2 else (i,))])
        _assert_same_matrix(chunked.finish(len(ref.vocab_dict), method, cfg.k1, cfg.b), ref.scores)
    assert list(tmp_path.iterdir()) == []  # the temporary chunk file is gone

    queries = [" ".join(rng.sample(d.text.split(), 3)) for d in rng.sample(docs, 150)] + ["the of", "zzz"]
    from_bm25s = BM25Retriever(ref, ours.docs, cfg)
    want = from_bm25s.search_indices(queries, 5)
    for got in (ours.search_indices(queries, 5),
                BM25Retriever(ours.model, ours.docs, BM25Config(**{**cfg.__dict__, "backend": "numpy"}))
                .search_indices(queries, 5)):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])

    build_index(docs, tmp_path / "idx", IndexConfig(retriever="bm25", bm25=cfg))
    mapped = load_retriever(tmp_path / "idx", LoadOptions(mmap=True))
    assert isinstance(mapped.model.scores["data"], np.memmap)
    _assert_same_matrix(mapped.model.scores, ref.scores)
    got = mapped.search_indices(queries, 5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert mapped.search(queries[:20], 3) == from_bm25s.search(queries[:20], 3)


def test_streaming_build_term_frequency_beyond_uint16():
    """A term repeated 70,000 times in a passage (past the compact uint16 counts) scores as in bm25s."""
    docs = [Document("0", "", "alpha " * 70_000 + "beta"), Document("1", "", "beta gamma"),
            Document("2", "", "alpha gamma delta")]
    ours = BM25Retriever.build(docs, BM25Config(stemmer=None))
    ref, _ = _bm25s_reference(docs, ours)
    _assert_same_matrix(ours.model.scores, ref.scores)


def test_build_of_empty_or_stopword_corpus():
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Retriever.build([])
    r = BM25Retriever.build([Document("0", "", "the of and"), Document("1", "", "")])
    assert len(r) == 2 and r.search(["the", "of and"], 3) == [[], []]
