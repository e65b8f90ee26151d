"""The agent service (`searchr1 serve-agent`): questions/s and latency of /v1/chat/completions.

The demo's trained checkpoint (``runs/demo/checkpoint`` when ``make demo`` has run here, else the shipped
demo base model, which speaks the same protocol) answers SearchWorld test questions with BM25 search, up to
4 turns of 72 tokens, greedy, over HTTP on loopback. Concurrency 1, 8 and 32 clients, each request one
question; the service batches waiting questions into one engine run (``max_batch`` 32). The batching gain is
the 32-client throughput against the same service with ``max_batch=1`` (one question per engine run).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLIENTS = (1, 8, 32)
DEMO_CHECKPOINT = Path("runs/demo/checkpoint")


def _serve(max_batch: int, model, tok, bm25):
    from searchr1.agent.service import AgentConfig, AgentRunner, create_agent_app
    from searchr1.rollout.backends.hf import HFBackend
    from searchr1.rollout.config import RolloutConfig
    from searchr1.search.server import BackgroundServer

    cfg = AgentConfig(max_batch=max_batch, max_wait_ms=20,
                      rollout=RolloutConfig(max_turns=4, topk=3, max_turn_tokens=72, do_sample=False,
                                            return_logprobs=False, max_prompt_tokens=512, max_total_tokens=1280))
    return BackgroundServer(create_agent_app(AgentRunner(HFBackend(model, tok), tok, bm25, cfg), cfg))


def _load(questions: list[str], url: str, clients: int) -> tuple[float, list[float]]:
    import httpx

    def one(q: str) -> float:
        t0 = time.perf_counter()
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": q}]},
                       timeout=600)
        r.raise_for_status()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = list(pool.map(one, questions))
    return len(questions) / (time.perf_counter() - t0), lat


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def main() -> None:
    import torch

    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.demo.config import DEMO_RELATIONS
    from searchr1.demo.pretrain import SHIPPED_BASE, load_base_model
    from searchr1.search.bm25 import BM25Config, BM25Retriever

    torch.set_num_threads(1)
    path = DEMO_CHECKPOINT if (DEMO_CHECKPOINT / "config.json").is_file() else SHIPPED_BASE
    model, tok = load_base_model(path)
    world = generate_world(WorldConfig(seed=0, people=200, works=0, relations=DEMO_RELATIONS, dev_frac=0.1,
                                       test_frac=0.15))
    bm25 = BM25Retriever.build(world.documents, BM25Config(backend="numpy"))
    questions = [q.question for q in world.splits["test"]]
    print(f"model: {path}")
    rows = []
    with _serve(32, model, tok, bm25) as srv:
        _load(questions[:2], srv.url, 1)   # warm-up
        for c in CLIENTS:
            qps, lat = _load(questions[:max(8, 2 * c)], srv.url, c)
            rows.append((c, qps, _pct(lat, 0.5), _pct(lat, 0.99)))
    with _serve(1, model, tok, bm25) as srv:
        qps_one, _ = _load(questions[:64], srv.url, 32)
    print(f"{'clients':>7} {'q/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for c, qps, p50, p99 in rows:
        print(f"{c:>7} {qps:>7.2f} {p50 * 1000:>8.0f} {p99 * 1000:>8.0f}")
        print(f"BENCH agent_qps_c{c} {qps:.2f} q/s")
        print(f"BENCH agent_p50_ms_c{c} {p50 * 1000:.0f} ms")
        print(f"BENCH agent_p99_ms_c{c} {p99 * 1000:.0f} ms")
    print(f"32 clients, one question per engine run: {qps_one:.2f} q/s")
    print(f"BENCH agent_batching_gain {rows[-1][1] / qps_one:.2f} x")
