"""The agent service through the `openai` client on loopback: schema, trajectory field, streaming order,
batching of concurrent requests, auth and bad requests. The model is the demo's shipped base model (it
speaks the search protocol), over a small SearchWorld with BM25."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from searchr1.agent.service import AgentConfig, AgentRunner, create_agent_app
from searchr1.data.world import WorldConfig, generate_world
from searchr1.demo.pretrain import SHIPPED_BASE, load_base_model
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.config import RolloutConfig
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.search.server import BackgroundServer

TOKEN = "agent-secret"


@pytest.fixture(scope="module")
def service():
    world = generate_world(WorldConfig(seed=0, people=40, works=0,
                                       relations=("birthplace", "employer", "birth_country", "employer_city")))
    bm25 = BM25Retriever.build(world.documents, BM25Config(backend="numpy"))
    model, tok = load_base_model(SHIPPED_BASE)
    cfg = AgentConfig(model_name="demo-base", token=TOKEN, max_batch=8, max_wait_ms=50,
                      rollout=RolloutConfig(max_turns=4, topk=3, max_turn_tokens=72, do_sample=False,
                                            return_logprobs=False, max_total_tokens=1280, max_prompt_tokens=512))
    runner = AgentRunner(HFBackend(model, tok), tok, bm25, cfg)
    with BackgroundServer(create_agent_app(runner, cfg)) as srv:
        yield srv.url, runner, world


def client(url, key=TOKEN):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def test_chat_completion_has_the_openai_shape_and_the_trajectory(service):
    url, _, world = service
    q = world.splits["test"][0]
    r = client(url).chat.completions.create(model="demo-base", messages=[{"role": "user", "content": q.question}])
    assert r.object == "chat.completion" and r.model == "demo-base" and r.choices[0].message.role == "assistant"
    traj = r.model_extra["searchr1"]
    assert isinstance(r.choices[0].message.content, str)
    assert traj["turns"] >= 1 and traj["finish_reason"] in ("answer", "eos", "max_turns", "budget")
    assert (r.choices[0].finish_reason == "stop") == (traj["answer"] is not None)
    if traj["answer"] is not None:
        assert r.choices[0].message.content == traj["answer"]
    assert traj["searches"], "the demo base searches"
    first = traj["searches"][0]
    assert first["query"] and 1 <= len(first["passages"]) <= 3 and {"id", "title", "text", "score"} <= set(first["passages"][0])
    assert {c["id"] for c in traj["citations"]} == {p["id"] for s in traj["searches"] for p in s["passages"]}
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 0


def test_streaming_sends_the_trajectory_in_order_then_the_answer(service):
    url, _, world = service
    q = world.splits["test"][1]
    msgs = [{"role": "user", "content": q.question}]
    whole = client(url).chat.completions.create(model="demo-base", messages=msgs)
    chunks = list(client(url).chat.completions.create(model="demo-base", messages=msgs, stream=True))
    assert all(c.object == "chat.completion.chunk" for c in chunks) and len({c.id for c in chunks}) == 1
    events = [c.model_extra["searchr1_event"] for c in chunks if c.model_extra.get("searchr1_event")]
    kinds = [e["type"] for e in events]
    assert kinds and kinds[0] == "turn" and kinds.count("search") == len(whole.model_extra["searchr1"]["searches"])
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert content == whole.choices[0].message.content   # greedy: the same answer streamed or not
    assert chunks[-1].model_extra["searchr1"]["searches"] == whole.model_extra["searchr1"]["searches"]


def test_concurrent_requests_share_engine_runs(service):
    url, runner, world = service
    before = runner.batches
    qs = [q.question for q in world.splits["test"][:6]]
    with ThreadPoolExecutor(6) as pool:
        res = list(pool.map(lambda q: client(url).chat.completions.create(
            model="demo-base", messages=[{"role": "user", "content": q}]), qs))
    assert len(res) == 6 and all(r.model_extra["searchr1"]["turns"] >= 1 for r in res)
    assert runner.batches - before < 6, "concurrent questions must be batched into fewer engine runs"


def test_auth_and_bad_requests(service):
    url, _, _ = service
    with pytest.raises(openai.AuthenticationError):
        client(url, key="wrong").chat.completions.create(model="x", messages=[{"role": "user", "content": "hi?"}])
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client(url).chat.completions.create(model="x", messages=[{"role": "system", "content": "be brief"}])
    r = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/chat/completions", content=b"hello", headers={
        "Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert [m.id for m in client(url).models.list()] == ["demo-base"]


def test_ask_talks_to_a_running_agent(service, capsys):
    import json as _json

    from searchr1.cli import main

    url, _, world = service
    q = world.splits["test"][2].question
    assert main(["ask", q, "--server-agent", url, "--agent-token", TOKEN, "--json"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert out["question"] == q and out["turns"] >= 1 and out["searches"] == len(out["queries"]) >= 1
    assert out["retrieved"][0] and {"id", "title"} <= set(out["citations"][0])
    assert main(["ask", q, "--server-agent", url, "--agent-token", TOKEN]) == 0
    live = capsys.readouterr().out
    assert "search" in live and out["queries"][0] in live
    assert main(["ask", q, "--server-agent", url, "--agent-token", "wrong"]) == 1
    assert "HTTP 401" in capsys.readouterr().err
