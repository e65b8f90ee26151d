"""serve-agent's backends, built by its own argument parser: ``openai`` (an upstream OpenAI-compatible model
server writes the text, this service runs the search loop) against a fake upstream on loopback, and
``vllm``'s error where vLLM is not installed."""
from __future__ import annotations

import importlib.util
import re

import openai
import pytest

from searchr1.agent.cli import build_app
from searchr1.cli import build_parser, main
from searchr1.data.world import WorldConfig, generate_world
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.search.index import save_index
from searchr1.search.server import BackgroundServer

STOPS = ("</search>", "</answer>")


def fake_upstream(seen: list[dict]):
    """A chat-completions server that searches the subject named in the question, then answers with what
    follows "works for" in the injected passages; like real servers it strips the stop string it met."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        seen.append(body)
        question, later = body["messages"][0]["content"], "\n".join(m["content"] for m in body["messages"][1:])
        read = re.search(r"works for ([A-Z][\w ]+?)\.", later)
        if read:
            text, stop = f"<think>I read it.</think>\n<answer> {read.group(1)} ", "</answer>"
        else:
            name = re.search(r"does (.+?) work for\?", question).group(1)
            text, stop = f"<think>I must look up {name}.</think>\n<search> {name} ", "</search>"
        return {"id": "up-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop", "stop_reason": stop}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}}

    return app


@pytest.fixture(scope="module")
def world_index(tmp_path_factory):
    world = generate_world(WorldConfig(seed=3, people=12, works=0, relations=("employer",)))
    out = tmp_path_factory.mktemp("agent-backends") / "index"
    save_index(BM25Retriever.build(world.documents, BM25Config(backend="numpy")), out)
    return world, out


def test_openai_backend_runs_the_search_loop_here_and_the_text_upstream(world_index):
    world, index = world_index
    q = next(q for q in world.splits["test"] if q.metadata["relation"] == "employer")
    seen: list[dict] = []
    with BackgroundServer(fake_upstream(seen)) as upstream:
        args = build_parser().parse_args(["serve-agent", "--backend", "openai", "--upstream", f"{upstream.url}/v1",
                                          "--model", "upstream-llm", "--index", str(index), "--topk", "2"])
        app, name = build_app(args)
        with BackgroundServer(app) as agent:
            client = openai.OpenAI(base_url=f"{agent.url}/v1", api_key="unused", max_retries=0, timeout=60)
            r = client.chat.completions.create(model=name, messages=[{"role": "user", "content": q.question}])
    backend = app.state.runner.backend
    assert backend.generator.base_url == f"{upstream.url}/v1"
    traj = r.model_extra["searchr1"]
    assert name == "upstream-llm" and r.model == "upstream-llm"
    assert r.choices[0].message.content in q.golden_answers and r.choices[0].finish_reason == "stop"
    assert [s["query"] for s in traj["searches"]] == [q.metadata["subject"]]
    evidence = {d.id: d for d in world.documents}[q.metadata["evidence_ids"][0]]
    assert evidence.id in [p["id"] for p in traj["searches"][0]["passages"]]
    assert len(seen) == 2 and all(b["model"] == "upstream-llm" and set(b["stop"]) == set(STOPS) for b in seen)
    injected = [m["content"] for m in seen[1]["messages"] if m["role"] == "user"][-1]
    assert "<information>" in injected and evidence.text in injected   # our retrieval, sent upstream
    assert [m["role"] for m in seen[0]["messages"]] == ["user"]   # the first turn: the prompt alone


def test_openai_backend_needs_an_upstream_and_a_model(world_index, capsys):
    _, index = world_index
    assert main(["serve-agent", "--backend", "openai", "--model", "m", "--index", str(index)]) == 2
    assert "--backend openai needs --upstream URL" in capsys.readouterr().err
    assert main(["serve-agent", "--upstream", "http://127.0.0.1:9/v1", "--index", str(index)]) == 2
    assert "are for --backend openai" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_without_vllm_says_how_to_get_it(world_index, capsys):
    _, index = world_index
    assert main(["serve-agent", "--backend", "vllm", "--index", str(index)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vllm is not installed" in err and "searchr1[gpu]" in err
