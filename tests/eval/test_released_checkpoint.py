"""The recipe for Search-R1's released checkpoints (docs/evaluation.md), on a locally saved Qwen2-architecture
model: `searchr1 eval --model DIR --methods search-r1 --template search-r1 ...` runs, and the manifest records
what a comparison with the paper's table needs (model hash, template hash, chat-template flag, retriever,
top-k, decoding, turns, budgets, data sets)."""
from __future__ import annotations

import json

import pytest

from searchr1.cli import main
from searchr1.data.prompts import template_hash


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory, qwen_tokenizer_dir):
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(str(qwen_tokenizer_dir))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=4096, tie_word_embeddings=True,
                                         eos_token_id=tok.eos_token_id))
    d = tmp_path_factory.mktemp("released-qwen2")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _eval(world, model_dir, out, *extra):
    return main(["eval", "--data", str(world["dir"] / "test.jsonl"), "--index", str(world["index"]),
                 "--model", str(model_dir), "--methods", "search-r1", "--limit", "2", "--max-new-tokens", "6",
                 "--max-turns", "2", "--topk", "3", "--out", str(out), *extra])


def test_manifest_records_the_paper_protocol(world, qwen2_dir, tmp_path, capsys):
    assert _eval(world, qwen2_dir, tmp_path / "raw", "--template", "search-r1", "--chat-template", "none") == 0
    m = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    sr1 = m["methods"]["search-r1"]
    assert sr1["templates"]["search-r1"] == template_hash("search-r1") and sr1["chat_template"] is False
    assert sr1["max_new_tokens"] == 6 and m["settings"]["max_turns"] == 2 and m["topk"] == 3
    assert m["model"]["architecture"] == "Qwen2ForCausalLM" and len(m["model"]["weights_sha256"]) == 16
    assert m["retriever"]["kind"] == "bm25" and m["retriever"]["corpus_sha256"]
    assert m["decoding"]["greedy"] is True and [d["n"] for d in m["datasets"].values()] == [2]
    assert _eval(world, qwen2_dir, tmp_path / "chat") == 0
    capsys.readouterr()
    assert main(["eval", "--compare", str(tmp_path / "raw" / "results.json"), str(tmp_path / "chat" / "results.json")]) == 1
    assert "methods.search-r1.chat_template" in capsys.readouterr().out


def test_a_bad_template_is_one_error_line(world, qwen2_dir, tmp_path, capsys):
    assert _eval(world, qwen2_dir, tmp_path / "bad", "--template", "no slot here") == 2
    assert "unknown template 'no slot here'" in capsys.readouterr().err
