"""The Qdrant retriever, on qdrant-client's embedded local mode (no server): same hits as FAISS flat."""
import pytest

pytest.importorskip("qdrant_client")

from searchr1.cli import main  # noqa: E402
from searchr1.search.dense import DenseConfig, DenseRetriever  # noqa: E402
from searchr1.search.index import IndexConfig, build_index, load_retriever, read_index_meta  # noqa: E402
from searchr1.search.qdrant import QdrantConfig, QdrantRetriever  # noqa: E402
from searchr1.search.server import BackgroundServer, create_app  # noqa: E402
from searchr1.search.client import HTTPSearchClient  # noqa: E402

QUERIES = ["capital of Germany", "who created Python", "largest planet", "Trojan War", "highest mountain"]


@pytest.fixture(scope="module")
def flat(tiny_docs, minilm):
    return DenseRetriever.build(tiny_docs, DenseConfig(), encoder=minilm, show_progress=False)


def _same(got, want):
    assert [[h.doc for h in r] for r in got] == [[h.doc for h in r] for r in want]
    assert [h.score for r in got for h in r] == pytest.approx([h.score for r in want for h in r], abs=1e-5)


def test_in_memory_collection_matches_faiss_flat(tiny_docs, minilm, flat):
    q = QdrantRetriever.build(tiny_docs, QdrantConfig(), encoder=minilm, chunk=3)  # 3 upload chunks
    assert len(q) == len(tiny_docs)
    for k in (1, 3, 8):
        _same(q.search(QUERIES, k), flat.search(QUERIES, k))
    assert q.search([], 3) == []
    with pytest.raises(ValueError, match="cannot be saved"):
        q.save_files("unused")
    q.close()


def test_index_directory_on_a_local_store_serves_over_http(tmp_path, tiny_docs, flat):
    store = tmp_path / "qdrant"
    cfg = IndexConfig(retriever="qdrant", qdrant=QdrantConfig(url=str(store), collection="tiny"))
    built = build_index(tiny_docs, tmp_path / "idx", cfg)
    built.close()  # the embedded store admits one client at a time
    meta = read_index_meta(tmp_path / "idx")
    assert meta["kind"] == "qdrant" and meta["num_passages"] == len(tiny_docs)
    assert meta["retriever"]["collection"] == "tiny" and meta["corpus"]["sha256"]
    loaded = load_retriever(tmp_path / "idx")
    with BackgroundServer(create_app(loaded, kind="qdrant")) as srv:
        _same(HTTPSearchClient(srv.url, retries=0).search(QUERIES, 3), flat.search(QUERIES, 3))
    loaded.close()


def test_cli_builds_and_searches_a_qdrant_index(tmp_path, tiny_docs, capsys):
    from searchr1.search.corpus import write_corpus_jsonl

    write_corpus_jsonl(tiny_docs, tmp_path / "c.jsonl")
    argv = ["index", "--retriever", "qdrant", "--qdrant-url", str(tmp_path / "store"), "--corpus",
            str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "idx")]
    assert main(argv) == 0
    assert main(["search", "--index", str(tmp_path / "idx"), "capital of Germany", "--topk", "1"]) == 0
    assert "Berlin" in capsys.readouterr().out
    assert main(["search", "--index", str(tmp_path / "idx"), "--mmap", "x"]) == 2
    assert "Qdrant index" in capsys.readouterr().err
