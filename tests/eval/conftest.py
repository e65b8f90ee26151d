"""Shared, session-scoped fixtures of the evaluation tests: a tiny SearchWorld with its BM25
index, a tiny random Qwen2 model (built here, saved to disk), SmolLM2, a fake OpenAI endpoint,
and a scripted generator (a stand-in for the *model* when a test checks a method's logic)."""

import re
import socket
import threading
import time

import pytest

from searchr1.models.generate import Completion, cut_at_stop


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.data.world_io import write_world
    from searchr1.search.index import build_index

    out = tmp_path_factory.mktemp("world")
    w = generate_world(WorldConfig(seed=3, countries=3, cities=6, organisations=4, people=16, works=4,
                                   dev_frac=0.2, test_frac=0.3))
    write_world(w, out)
    build_index(out / "corpus.jsonl", out / "index")
    return {"dir": out, "world": w, "index": out / "index"}


@pytest.fixture(scope="session")
def retriever(world):
    from searchr1.search.index import load_retriever

    return load_retriever(world["index"])


def tiny_tokenizer():
    """A 400-token byte-level BPE trained here on the prompt templates, with a ChatML chat template
    (byte-level, so any text round-trips exactly through encode/decode)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from searchr1.data.prompts import TEMPLATES

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = list(TEMPLATES.values()) + ["<think> </think> <search> </search> <answer> </answer> "
                                        "<information> </information> Doc 1(Title: x) born in the city of"] * 5
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    return fast


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer, hidden-32 Qwen2 with random weights and a tiny chat tokenizer, saved to disk."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg)
    out = tmp_path_factory.mktemp("tiny-qwen2")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    from searchr1.models import load_causal_lm

    return load_causal_lm(tiny_model_dir, dtype="float32")


@pytest.fixture(scope="session")
def smol():
    from searchr1.models import smollm2

    return smollm2()


class ScriptedGenerator:
    """Answers from a script ``fn(prompt_text, response_so_far) -> text``, honouring stop strings and
    the token budget (a word is a token, as in the fake OpenAI server: a longer text is cut, "length").

    It stands in for the language model only; the methods, the loop and the retriever are real.
    """

    name = "scripted"

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def complete(self, transcripts, decoding, stop=None):
        out = []
        for t in transcripts:
            prompt = t.messages[-1]["content"]
            self.calls.append((prompt, t.response, list(stop or [])))
            text, stopped = cut_at_stop(self.fn(prompt, t.response), stop)
            reason = "stop" if stopped else "eos"
            if not stopped and len(text.split()) > decoding.max_new_tokens:
                text, reason = " ".join(text.split()[:decoding.max_new_tokens]), "length"
            out.append(Completion(text, len(text.split()), reason))
        return out


@pytest.fixture
def scripted():
    return ScriptedGenerator


def question_of(prompt: str) -> str:
    return re.findall(r"Question: (.*?)\n", prompt)[-1]


@pytest.fixture(scope="session")
def fake_openai():
    """A loopback /v1/chat/completions that replies from a queue of scripted texts (and honours
    ``stop`` as an OpenAI server does: the text is cut before the stop string, which is dropped)."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    state = {"replies": [], "requests": [], "fail_next": 0}
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state["requests"].append(body)
        if state["fail_next"] > 0:
            state["fail_next"] -= 1
            return JSONResponse({"error": "overloaded"}, status_code=503)
        text = state["replies"].pop(0) if state["replies"] else "<answer> nothing </answer>"
        reason = "stop"
        cuts = [text.find(s) for s in body.get("stop") or [] if s in text]
        if cuts:
            text = text[:min(cuts)]
        elif len(text.split()) > body.get("max_tokens", 1 << 30):
            text, reason = " ".join(text.split()[: body["max_tokens"]]), "length"
        return {"id": "x", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": reason}],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split()), "total_tokens": 2}}

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    yield {"url": f"http://127.0.0.1:{port}/v1", "state": state}
    server.should_exit = True
    thread.join(timeout=5)
