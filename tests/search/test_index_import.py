"""`searchr1 index import`: serve an existing FAISS index + JSONL corpus in place."""
import json

import httpx
import numpy as np
import pytest

from searchr1.cli import main
from searchr1.search.base import Document
from searchr1.search.corpus import CorpusError, write_corpus_jsonl
from searchr1.search.dense import DenseConfig
from searchr1.search.index import IndexConfig, build_index, import_faiss_index, load_retriever, read_index_meta
from searchr1.search.server import BackgroundServer, create_app

faiss = pytest.importorskip("faiss")
QUERIES = ["Who created the Python language?", "tallest mountain on the planet", "capital of Germany",
           "how do plants make energy from sunlight"]


@pytest.fixture(scope="module")
def native(tmp_path_factory, tiny_docs):
    """A native searchr1 dense index (bundled MiniLM) over the tiny corpus."""
    out = tmp_path_factory.mktemp("native")
    build_index(tiny_docs, out, IndexConfig(retriever="dense"))
    return out


@pytest.fixture(scope="module")
def external(tmp_path_factory, native, tiny_docs):
    """Search-R1's layout: a FAISS Flat IP file (same vectors) and an {"id", "contents"} JSONL corpus."""
    d = tmp_path_factory.mktemp("search_r1")
    index = faiss.read_index(str(native / "dense.faiss"))
    flat = faiss.IndexFlatIP(index.d)
    flat.add(index.reconstruct_n(0, index.ntotal))
    faiss.write_index(flat, str(d / "e5_Flat.index"))
    write_corpus_jsonl(tiny_docs, d / "wiki-18.jsonl")
    return d


def test_import_gives_the_native_top_k(tmp_path, native, external, capsys):
    out = tmp_path / "imported"
    assert main(["index", "import", "--faiss", str(external / "e5_Flat.index"), "--corpus",
                 str(external / "wiki-18.jsonl"), "--encoder", "all-MiniLM-L6-v2 (bundled)", "--pooling", "mean",
                 "--out", str(out)]) == 0
    assert "imported 8 passages" in capsys.readouterr().out
    assert not (out / "dense.faiss").exists() and not (out / "docs.jsonl").exists()  # nothing copied
    meta, native_meta = read_index_meta(out), read_index_meta(native)
    assert meta["num_passages"] == 8 and meta["retriever"]["dim"] == 384
    assert meta["corpus"]["sha256"] == native_meta["corpus"]["sha256"]  # same canonical passages
    got, want = load_retriever(out).search(QUERIES, 5), load_retriever(native).search(QUERIES, 5)
    assert [[h.doc for h in r] for r in got] == [[h.doc for h in r] for r in want]
    assert [h.score for r in got for h in r] == pytest.approx([h.score for r in want for h in r], abs=1e-6)


def test_imported_index_serves(tmp_path, native, external):
    out = tmp_path / "imported"
    import_faiss_index(external / "e5_Flat.index", external / "wiki-18.jsonl", out, DenseConfig())
    with BackgroundServer(create_app(load_retriever(out), kind="dense")) as srv:
        resp = httpx.post(srv.url + "/retrieve", json={"queries": QUERIES, "topk": 3, "return_scores": True})
    want = load_retriever(native).search(QUERIES, 3)
    assert [[h["document"]["id"] for h in r] for r in resp.json()["result"]] == [[h.doc.id for h in r] for r in want]


def test_query_prefix_reaches_the_encoder(tmp_path, external):
    out = tmp_path / "imported"
    config = DenseConfig(query_prefix="query: ")
    import_faiss_index(external / "e5_Flat.index", external / "wiki-18.jsonl", out, config)
    r = load_retriever(out)
    assert r.encoder.query_prefix == "query: " and r.config.query_prefix == "query: "


def _write_flat(path, dim, n, metric=None):
    index = faiss.IndexFlatIP(dim) if metric is None else faiss.IndexFlat(dim, metric)
    index.add(np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32))
    faiss.write_index(index, str(path))
    return path


def test_size_and_dimension_mismatches_are_clear_errors(tmp_path, tiny_docs, external):
    corpus = external / "wiki-18.jsonl"
    with pytest.raises(ValueError, match="384-dimensional.*--encoder"):
        import_faiss_index(_write_flat(tmp_path / "d16.index", 16, 8), corpus, tmp_path / "a", DenseConfig())
    with pytest.raises(ValueError, match="holds 9 vectors but .* has 8 passages"):
        import_faiss_index(_write_flat(tmp_path / "n9.index", 384, 9), corpus, tmp_path / "b", DenseConfig())
    assert not (tmp_path / "b" / "index.json").exists()  # a failed import never looks complete
    with pytest.raises(ValueError, match="L2"):
        import_faiss_index(_write_flat(tmp_path / "l2.index", 384, 8, faiss.METRIC_L2), corpus, tmp_path / "c",
                           DenseConfig())
    (tmp_path / "junk.index").write_bytes(b"not a faiss file")
    with pytest.raises(ValueError, match="not a readable FAISS index"):
        import_faiss_index(tmp_path / "junk.index", corpus, tmp_path / "d", DenseConfig())
    with pytest.raises(ValueError, match="no such file"):
        import_faiss_index(tmp_path / "missing.index", corpus, tmp_path / "e", DenseConfig())


def test_corpus_problems_are_clear_errors(tmp_path, external, tiny_docs):
    index = external / "e5_Flat.index"
    dup = tmp_path / "dup.jsonl"
    write_corpus_jsonl([*tiny_docs[:7], Document("d2", "Again", "a second passage with id d2")], dup)
    with pytest.raises(CorpusError, match="'d2' appears twice.*passages 3 and 8"):
        import_faiss_index(index, dup, tmp_path / "a", DenseConfig())
    gz = tmp_path / "wiki-18.jsonl.gz"
    gz.write_bytes(b"")
    with pytest.raises(CorpusError, match="uncompressed .jsonl"):
        import_faiss_index(index, gz, tmp_path / "b", DenseConfig())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(json.dumps(d.to_json()) for d in tiny_docs[:3]) + '\n{"id": 9}\n')
    with pytest.raises(CorpusError, match="bad.jsonl:4"):
        import_faiss_index(index, bad, tmp_path / "c", DenseConfig())


def test_a_changed_corpus_is_detected_at_load(tmp_path, external):
    corpus = tmp_path / "wiki-18.jsonl"
    corpus.write_bytes((external / "wiki-18.jsonl").read_bytes())
    out = tmp_path / "imported"
    import_faiss_index(external / "e5_Flat.index", corpus, out, DenseConfig())
    with corpus.open("a") as f:
        f.write(json.dumps({"id": "extra", "contents": '"X"\ny'}) + "\n")
    with pytest.raises(ValueError, match="corpus changed"):
        load_retriever(out)
