"""Sharded retrieval: 2 dense shards on loopback == one index over the whole corpus, same ranking."""
import numpy as np
import pytest

from searchr1.search.base import Document, Hit, SearchError
from searchr1.search.dense import DenseConfig, DenseRetriever
from searchr1.search.server import BackgroundServer, create_app
from searchr1.search.shards import ShardedRetriever, merge_topk

faiss = pytest.importorskip("faiss")

QUERIES = ["capital of Germany", "who created Python", "largest planet", "Trojan War", "plants and light",
           "highest mountain", "a Dutch programmer", "city in France"]


def _flat(encoder, vectors, docs):
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return DenseRetriever(encoder, index, docs, DenseConfig())


def test_two_shards_on_loopback_equal_one_index(tiny_docs, minilm):
    docs = list(tiny_docs)
    vectors = minilm.encode_passages(docs)  # one encoding: shard vectors are the whole index's rows
    whole = _flat(minilm, vectors, docs)
    shard_a, shard_b = _flat(minilm, vectors[:5], docs[:5]), _flat(minilm, vectors[5:], docs[5:])
    with BackgroundServer(create_app(shard_a, kind="dense")) as a, BackgroundServer(create_app(shard_b, kind="dense")) as b:
        sharded = ShardedRetriever.from_urls([a.url, b.url], retries=0)
        assert len(sharded) == len(docs)
        for k in (1, 3, len(docs)):
            got, want = sharded.search(QUERIES, k), whole.search(QUERIES, k)
            assert [[h.doc for h in r] for r in got] == [[h.doc for h in r] for r in want], k
            assert [h.score for r in got for h in r] == pytest.approx([h.score for r in want for h in r], abs=1e-6)
        # both shards contribute to the merged lists (the test would be vacuous otherwise)
        ids = {h.doc.id for r in sharded.search(QUERIES, 3) for h in r}
        assert ids & {d.id for d in docs[:5]} and ids & {d.id for d in docs[5:]}
        sharded.close()


def test_a_dead_shard_fails_the_batch_with_its_url(tiny_bm25):
    with BackgroundServer(create_app(tiny_bm25)) as live:
        dead = "http://127.0.0.1:9"  # discard port: nothing listens
        sharded = ShardedRetriever.from_urls([live.url, dead], retries=0, timeout=2)
        with pytest.raises(SearchError, match="127.0.0.1:9"):
            sharded.search(["capital"], 3)
        sharded.close()


def test_merge_breaks_ties_by_shard_then_rank():
    def hit(i, s):
        return Hit(Document(str(i), "", ""), s)

    a = [[hit(0, 2.0), hit(1, 1.0), hit(2, 1.0)]]
    b = [[hit(10, 1.0), hit(11, 0.5)]]
    merged = merge_topk([a, b], 4)
    assert [h.doc.id for h in merged[0]] == ["0", "1", "2", "10"]
    with pytest.raises(SearchError, match="different numbers"):
        merge_topk([a, [[], []]], 3)
    assert np.isclose(merge_topk([b, a], 1)[0][0].score, 2.0)


def test_server_flag_with_two_urls_searches_both_shards(tiny_docs, minilm, capsys):
    """`--server URL1,URL2` (eval/ask) and data.retriever_url take comma-separated shard URLs."""
    from searchr1.eval.setup import make_retriever
    from searchr1.rl.config import DataConfig
    from searchr1.rl.models import build_retriever
    from searchr1.search.shards import connect

    docs = list(tiny_docs)
    vectors = minilm.encode_passages(docs)
    whole = _flat(minilm, vectors, docs)
    shard_a, shard_b = _flat(minilm, vectors[:5], docs[:5]), _flat(minilm, vectors[5:], docs[5:])
    with BackgroundServer(create_app(shard_a, kind="dense")) as a, BackgroundServer(create_app(shard_b, kind="dense")) as b:
        urls = f"{a.url}, {b.url}"
        assert isinstance(connect(urls), ShardedRetriever) and not isinstance(connect(a.url), ShardedRetriever)
        guard, info = make_retriever(server=urls)
        assert info["kind"] == "sharded" and info["num_passages"] == len(docs)
        want = [[h.doc for h in r] for r in whole.search(QUERIES, 3)]
        assert [[h.doc for h in r] for r in guard.search(QUERIES, 3)] == want
        trainer_side = build_retriever(DataConfig(retriever_url=urls))
        assert [[h.doc for h in r] for r in trainer_side.search(QUERIES, 3)] == want
