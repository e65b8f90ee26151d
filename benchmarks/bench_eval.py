"""Evaluation throughput with the embedded SmolLM2-135M: batched vs one-at-a-time generation.

The evaluation runner sends each method's questions to the generator in batches
(``--batch-size``, default 8). This measures what batching buys on this machine:
greedy decoding of the ``cot`` prompt for 8 SearchWorld-style questions, 32 new
tokens each, at batch size 1 and 8 (same prompts, same outputs' token budget).
"""
from __future__ import annotations

import time


def main() -> None:
    import torch

    from searchr1.data.prompts import make_prompt
    from searchr1.models import Decoding, HFGenerator, Transcript, smollm2

    torch.set_num_threads(1)
    model, tok = smollm2()
    questions = [f"Where was person number {i} of the village born?" for i in range(8)]
    transcripts = [Transcript([{"role": "user", "content": make_prompt(q, "cot")}]) for q in questions]
    decoding = Decoding(max_new_tokens=32)
    rows = []
    for bs in (1, 8):
        gen = HFGenerator(model, tok, batch_size=bs)
        gen.complete(transcripts[:1], Decoding(max_new_tokens=2))  # warm-up
        t0 = time.perf_counter()
        outs = gen.complete(transcripts, decoding)
        dt = time.perf_counter() - t0
        tokens = sum(c.n_tokens for c in outs)
        rows.append((bs, tokens, dt, tokens / dt))
    print(f"{'batch':>5} {'tokens':>7} {'seconds':>8} {'tok/s':>7}")
    for bs, tokens, dt, tps in rows:
        print(f"{bs:>5} {tokens:>7} {dt:>8.2f} {tps:>7.1f}")
    print(f"BENCH eval_smollm2_tok_per_s_batch1 {rows[0][3]:.1f} tok/s")
    print(f"BENCH eval_smollm2_tok_per_s_batch8 {rows[1][3]:.1f} tok/s")
    print(f"BENCH eval_batching_speedup {rows[1][3] / rows[0][3]:.2f} x")
