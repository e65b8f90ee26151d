"""The cross-encoder reranker, with a tiny BERT classifier built in the test (no hub)."""
import sys

import httpx
import pytest

from searchr1.errors import ConfigError
from searchr1.search.base import Document, Hit
from searchr1.search.index import build_index
from searchr1.search.rerank import CrossEncoderReranker, RerankConfig
from searchr1.search.server import BackgroundServer, ServerConfig, build_backend, create_app

WORDS = ("paris capital france berlin germany python language programming created guido van rossum the of is a "
         "city largest mountain planet sun energy light").split()


def tiny_cross_encoder(path, num_labels: int = 1):
    """Save a 1-layer BERT sequence classifier and its WordPiece tokenizer in ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128, num_labels=num_labels,
                        initializer_range=0.5)  # large weights: pairs get clearly different logits
    BertForSequenceClassification(config).save_pretrained(path)
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory):
    return tiny_cross_encoder(tmp_path_factory.mktemp("rerank") / "tiny-ce")


def reference_logits(model_dir, pairs):
    """The classifier's logits computed directly with transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    enc = tok([q for q, _ in pairs], [p for _, p in pairs], padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits[:, 0].tolist()


class Asked:
    def __init__(self, inner):
        self.inner, self.asked = inner, []

    def search(self, queries, topk):
        self.asked.append(topk)
        return self.inner.search(queries, topk)


def test_sorting_and_ties_with_a_hand_made_scorer():
    docs = [Document(str(i), f"t{i}", "x" * n) for i, n in enumerate([5, 1, 3, 1])]

    class Fixed:
        def search(self, queries, topk):
            return [[Hit(d, 1.0) for d in docs[:topk]] for _ in queries]

    seen = []

    def scorer(pairs):
        seen.extend(pairs)
        return [float(p.count("x")) for _, p in pairs]  # longer passage = more relevant

    r = CrossEncoderReranker(Fixed(), RerankConfig(top_n=4), scorer=scorer)
    out = r.search(["q1", "q2"], 3)
    assert [[h.doc.id for h in row] for row in out] == [["0", "2", "1"]] * 2  # 1 and 3 tie: retriever order kept
    assert [h.score for h in out[0]] == [5.0, 3.0, 1.0]
    assert len(seen) == 8 and seen[0] == ("q1", docs[0].contents)


@pytest.mark.parametrize("library", ["sentence-transformers", "transformers"])
def test_tiny_cross_encoder_reranks_the_top_n(tiny_ce, tiny_docs, library, monkeypatch):
    if library == "transformers":
        monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails: the fallback loads it

    class InCorpusOrder:  # every passage, in corpus order: what the model changes is plain to see
        def search(self, queries, topk):
            return [[Hit(d, 1.0 / (i + 1)) for i, d in enumerate(tiny_docs[:topk])] for _ in queries]

    inner = Asked(InCorpusOrder())
    r = CrossEncoderReranker(inner, RerankConfig(model=str(tiny_ce), top_n=6))
    queries = ["what is the capital city of france", "who created the python programming language"]
    out = r.search(queries, 3)
    assert inner.asked == [6]
    moved = False
    for q, row, base in zip(queries, out, InCorpusOrder().search(queries, 6)):
        want = reference_logits(tiny_ce, [(q, h.doc.contents) for h in base])
        order = sorted(range(len(base)), key=lambda i: (-want[i], i))[:3]
        assert [h.doc.id for h in row] == [base[i].doc.id for i in order]
        assert [h.score for h in row] == pytest.approx([want[i] for i in order], abs=1e-4)
        moved |= order != [0, 1, 2]
    assert moved  # the model's order is not the retriever's: the stage changed something


def test_a_model_with_two_outputs_is_refused(tmp_path, tiny_bm25):
    two = tiny_cross_encoder(tmp_path / "two", num_labels=2)
    with pytest.raises(ConfigError, match="has 2 outputs"):
        CrossEncoderReranker(tiny_bm25, RerankConfig(model=str(two)))
    with pytest.raises(ConfigError, match="top_n >= 1"):
        RerankConfig(model="x", top_n=0)


def test_served_with_rerank(tiny_ce, tiny_docs, tmp_path):
    build_index(tiny_docs, tmp_path / "idx")
    retriever, kind = build_backend("index", tmp_path / "idx", rerank=RerankConfig(model=str(tiny_ce), top_n=5))
    want = retriever.search(["capital city of france"], 2)
    with BackgroundServer(create_app(retriever, ServerConfig(batch_wait_ms=0), kind=kind)) as srv:
        body = httpx.post(srv.url + "/retrieve", json={"queries": ["capital city of france"], "topk": 2,
                                                       "return_scores": True}).json()
        health = httpx.get(srv.url + "/health").json()
    assert [r["document"]["id"] for r in body["result"][0]] == [h.doc.id for h in want[0]]
    assert health["rerank"] == {"model": str(tiny_ce), "top_n": 5} and health["corpus_size"] == len(tiny_docs)
