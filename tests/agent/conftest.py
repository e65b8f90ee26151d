"""A model-free agent service for the page tests: a scripted policy over a tiny BM25 index whose passages
hold HTML, so a page that parsed server text as markup would show it (or run it)."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from searchr1.agent.service import AgentConfig, AgentRunner, create_agent_app
from searchr1.rollout.backends.openai import ByteTokenizer
from searchr1.rollout.backends.scripted import ScriptedBackend
from searchr1.rollout.config import RolloutConfig
from searchr1.search.base import Document
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.search.server import BackgroundServer

PAGE_TOKEN = "page-secret"
HOSTILE_TITLE = '<img src=x onerror="window.__xss=1">Ada <b>Lovelace</b>'
HOSTILE_TEXT = 'Ada Lovelace was born in London. <script>window.__xss=2</script> & "quotes"'
SCRIPT = ["<think>I should look up Ada Lovelace.</think>\n<search> Ada Lovelace born </search>",
          "<think>The passage says <i>London</i>.</think>\n<answer> London </answer>"]


class GatedRetriever:
    """Searches wait while ``gate`` is clear: a test can look at the page between two turns."""

    def __init__(self, inner):
        self.inner, self.gate = inner, threading.Event()
        self.gate.set()

    def search(self, queries, topk):
        if not self.gate.wait(timeout=60):
            raise TimeoutError("the test never opened the retriever's gate")
        return self.inner.search(queries, topk)


@pytest.fixture(scope="module")
def scripted_service():
    """A running agent service whose policy plays SCRIPT for every question: ``url``, ``token`` and the
    hostile passage's ``title`` and ``text``; ``gate`` holds its searches while clear."""
    docs = [Document("ada-1", HOSTILE_TITLE, HOSTILE_TEXT),
            Document("babbage-1", "Charles Babbage", "Charles Babbage designed the Analytical Engine in London."),
            Document("other-1", "Mary Somerville", "Mary Somerville wrote about physical geography.")]
    tok = ByteTokenizer()
    cfg = AgentConfig(model_name="scripted", token=PAGE_TOKEN, max_wait_ms=1,
                      rollout=RolloutConfig(max_turns=3, topk=2, do_sample=False, return_logprobs=False))
    retriever = GatedRetriever(BM25Retriever.build(docs, BM25Config(backend="numpy")))
    runner = AgentRunner(ScriptedBackend(tok, [SCRIPT] * cfg.max_batch), tok, retriever, cfg)
    with BackgroundServer(create_agent_app(runner, cfg)) as srv:
        yield SimpleNamespace(url=srv.url, token=PAGE_TOKEN, title=HOSTILE_TITLE, text=HOSTILE_TEXT,
                              gate=retriever.gate)
        retriever.gate.set()
