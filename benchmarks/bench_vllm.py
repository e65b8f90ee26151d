"""Rollouts on vLLM vs HFBackend, and the cost of a weight push (``make bench B=vllm``, runs in .venv-vllm).

Model: SmolLM2-135M-Instruct (the offline package) in float32 on both backends. Data: 32 SearchWorld
questions (a generated world, BM25 index) under the search-r1 prompt, one sampled trajectory each
(temperature 1, seed 0), 2 turns of at most 64 tokens. The same RolloutEngine drives both backends, so
the figures compare decoding only (retrieval is the same BM25 call in both).

Printed: trajectories/s and policy tokens/s of each backend, ``BENCH rollout_vllm_vs_hf <ratio> x`` (tokens/s,
vLLM over HF), and ``BENCH weight_sync_s <s> s``: the median of 3 pushes of the full model
(``VLLMBackend.sync_weights``: reload through the model's loader, CPU repacking, prefix-cache reset).
The vLLM engine is built with torch.compile (minutes on 2 cores; cached under ~/.cache/vllm) and its KV
cache capped at 1 GiB.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

N_QUESTIONS = 32
MAX_TURNS = 2
TURN_TOKENS = 64


def _rollout(backend, tok, retriever, prompts) -> tuple[float, int, int]:
    """(seconds, trajectories, policy tokens) of one batched rollout."""
    from searchr1.rollout import RolloutConfig, RolloutEngine

    cfg = RolloutConfig(max_turns=MAX_TURNS, max_turn_tokens=TURN_TOKENS, max_obs_tokens=128, seed=0)
    t0 = time.perf_counter()
    trajs = RolloutEngine(backend, retriever, tok, cfg).run(prompts)
    seconds = time.perf_counter() - t0
    return seconds, len(trajs), sum(sum(t.response_mask) for t in trajs)


def main() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        print("vLLM is not installed in this environment: `make install-vllm`, then `make bench B=vllm`")
        return
    import torch

    from searchr1.data.load import load_qa
    from searchr1.data.prompts import apply_chat_template, make_prompt
    from searchr1.data.world import WorldConfig, generate_world
    from searchr1.data.world_io import write_world
    from searchr1.models.hf import load_causal_lm
    from searchr1.models.smollm2 import smollm2_dir
    from searchr1.rollout.backends.hf import HFBackend
    from searchr1.rollout.backends.vllm import VLLMBackend
    from searchr1.search.index import build_index, load_retriever

    torch.manual_seed(0)
    path = smollm2_dir()
    model, tok = load_causal_lm(str(path), dtype="float32", device="cpu")
    with tempfile.TemporaryDirectory() as d:
        write_world(generate_world(WorldConfig(seed=0)), Path(d))
        build_index(Path(d) / "corpus.jsonl", Path(d) / "index")
        retriever = load_retriever(Path(d) / "index")
        questions = load_qa(str(Path(d) / "train.jsonl"))[:N_QUESTIONS]
        prompts = [apply_chat_template(tok, make_prompt(q.question, "search-r1")) for q in questions]
        print(f"SmolLM2-135M-Instruct fp32, {len(prompts)} SearchWorld questions, {MAX_TURNS} turns x "
              f"{TURN_TOKENS} tokens, torch threads {torch.get_num_threads()}", flush=True)
        t0 = time.perf_counter()
        engine = VLLMBackend(str(path), dtype="float32", max_model_len=2048, kv_cache_gib=1.0)
        print(f"vLLM engine built in {time.perf_counter() - t0:.0f} s", flush=True)
        figures = {}
        for name, backend in (("hf", HFBackend(model, tok)), ("vllm", engine)):
            _rollout(backend, tok, retriever, prompts[:4])              # warm-up
            seconds, n, tokens = _rollout(backend, tok, retriever, prompts)
            figures[name] = tokens / seconds
            print(f"{name}: {seconds:.1f} s, {n / seconds:.2f} trajectories/s, {tokens / seconds:.0f} policy tokens/s "
                  f"({tokens} tokens)", flush=True)
            print(f"BENCH rollout_{name}_tokens_per_s {tokens / seconds:.1f} tok/s")
        pushes = [engine.sync_weights(model) for _ in range(3)]
        print(f"BENCH rollout_vllm_vs_hf {figures['vllm'] / figures['hf']:.2f} x")
        print(f"BENCH weight_sync_s {statistics.median(pushes):.2f} s")
