"""Rollout engine vs a Search-R1-style loop, same model, same prompts, one run.

Model: a tiny random Qwen2 body (hidden 64, 2 layers) wrapped as
:class:`searchr1.rollout.toy.BigramProtocolLM`, with bigram counts from sampled protocol texts and
a byte-level BPE tokenizer trained on them (protocol tags are single tokens). Think, query, answer,
title and passage words come from disjoint word lists, so the chain writes well-formed
``<think> … </think><search> … </search>`` / ``<answer> … </answer>`` turns of geometric lengths
(about 15 think words, 4 query words) and answers after 0-3 searches -- and, like a real model left
unstopped, goes on after ``</search>`` hallucinating an ``<information>`` block.
Retriever: a fixed fake returning 100-word passages (retrieval itself is not what is measured).

(a) ours: RolloutEngine + HFBackend (stops at the stop string, KV cache reused across turns).
(b) Search-R1's loop: each turn re-encodes the whole context, samples the full per-turn budget
    (rows stop only at EOS and, as in HF ``generate``, stay in the batch as padding), cuts the
    text at the first ``</search>`` / ``</answer>`` and re-tokenizes it; the last turn has no
    search. Same batched sampler (HFBackend) underneath.

Where the time goes in (a): a turn lasts as long as its longest row (one batched search per turn),
so the speedup is bounded by the spread of turn lengths, not by the 500-token budget; and on the last
turn ``</search>`` is no stop (searching is disabled there, as in Search-R1), so a row that still
searches samples on until ``</answer>`` / EOS / budget in both loops.
"""
from __future__ import annotations

import os
import random
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

N_PROMPTS = 32
MAX_TURNS = 4
TURN_TOKENS = 500
THINK = "maybe perhaps likely recall remember think guess wonder check verify consider".split()
QUERY = "river city king year war book film song team island church music".split()
ANSWER = "paris london rome berlin madrid vienna athens oslo".split()
TITLE = "alpha beta gamma delta omega sigma".split()
INFO = "born founded played wrote located capital famous old north south early late".split()


def _span(rng, words, mean):
    n = 1
    while rng.random() > 1 / mean:
        n += 1
    return " ".join(rng.choice(words) for _ in range(n))


def question(rng: random.Random) -> str:
    return f"which {_span(rng, QUERY, 3)} is it"


def protocol_text(rng: random.Random, eos: str) -> str:
    """One sampled assistant response in the Search-R1 protocol (no spaces around tags, so that
    no single token, e.g. a lone space, leads to several different tags)."""
    out = []
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        docs = " ".join(f"Doc {i}(Title: {_span(rng, TITLE, 2)}) {_span(rng, INFO, 25)}" for i in (1, 2, 3))
        out.append(f"<think>{_span(rng, THINK, 15)}</think><search>{_span(rng, QUERY, 4)}</search>"
                   f"<information>{docs}</information>\n\n")
    out.append(f"<think>{_span(rng, THINK, 15)}</think><answer>{_span(rng, ANSWER, 1.5)}</answer>{eos}")
    return "".join(out)


class FixedRetriever:
    """Top-k passages of 100 words each, like Search-R1's wiki-18 100-word passages."""

    def search(self, queries, topk):
        from searchr1.search.base import Document, Hit

        out = []
        for q in queries:
            rng = random.Random(q)
            out.append([Hit(Document(f"{q}#{k}", f"{q} {k}", " ".join(rng.choice(INFO) for _ in range(100))), 1.0)
                        for k in range(topk)])
        return out


def build():
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from searchr1.data.prompts import make_prompt
    from searchr1.demo.tokenizer import EOS, train_tokenizer
    from searchr1.rollout.toy import BigramProtocolLM

    rng = random.Random(0)
    prompts = [make_prompt(question(rng)) for _ in range(N_PROMPTS)]
    # every question ends "is it?\n": the chain starts from that tail; prompts themselves are not counted
    responses = ["is it?\n" + protocol_text(rng, EOS) for _ in range(600)]
    tok = train_tokenizer(prompts + responses, vocab_size=1024)
    torch.manual_seed(0)
    body = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=8192, tie_word_embeddings=True)).eval()
    model = BigramProtocolLM(body, tok, responses)
    return tok, model, prompts


def run_ours(tok, model, prompts, seed=0):
    from searchr1.rollout import RolloutConfig, RolloutEngine
    from searchr1.rollout.backends.hf import HFBackend

    cfg = RolloutConfig(max_turns=MAX_TURNS, max_turn_tokens=TURN_TOKENS, seed=seed)
    engine = RolloutEngine(HFBackend(model, tok), FixedRetriever(), tok, cfg)
    t0 = time.perf_counter()
    trajs = engine.run(prompts)
    dt = time.perf_counter() - t0
    sampled = sum(sum(t.response_mask) for t in trajs)
    return {"time": dt, "sampled": sampled, "wasted": 0, "answered": sum(t.answer is not None for t in trajs),
            "turns": sum(t.turns for t in trajs) / len(trajs)}


def _kept_tokens(tok, ids, stops):
    """How many of ``ids`` a stop-string-aware sampler would have produced (measurement only)."""
    from searchr1.models.stopping import StopChecker

    check = StopChecker(tok, stops)
    for k in range(1, len(ids) + 1):
        if check(ids[:k]) is not None:
            return k
    return len(ids)


def run_searchr1_loop(tok, model, prompts, seed=0):
    """Search-R1's multi-turn loop: full budget per turn, cut afterwards, re-encode every turn."""
    from searchr1.rollout.backends.base import TurnParams
    from searchr1.rollout.backends.hf import HFBackend
    from searchr1.data.prompts import passages_body
    from searchr1.protocol import INVALID_ACTION_TEXT, information, parse_action

    backend, retriever = HFBackend(model, tok, park=False), FixedRetriever()  # HF generate keeps ended rows
    contexts = [tok.encode(p, add_special_tokens=False) for p in prompts]
    active, answered, sampled, wasted, measure = list(range(len(prompts))), 0, 0, 0, 0.0
    params = TurnParams(stop=())  # no stop strings: sample the whole budget
    t0 = time.perf_counter()
    for turn in range(1, MAX_TURNS + 1):
        if not active:
            break
        last = turn == MAX_TURNS
        stops = ("</answer>",) if last else ("</search>", "</answer>")
        session = backend.open([contexts[i] for i in active], seed=seed + turn)  # re-encode everything
        gens = session.generate(range(len(active)), [[]] * len(active), [TURN_TOKENS] * len(active), params)
        queries, still = [], []
        for i, g in zip(active, gens):
            sampled += len(g.token_ids)
            m0 = time.perf_counter()
            wasted += len(g.token_ids) - _kept_tokens(tok, g.token_ids, stops)
            measure += time.perf_counter() - m0
            text = tok.decode(g.token_ids, skip_special_tokens=True)
            cuts = [text.find(s) + len(s) for s in stops if s in text]
            text = text[: min(cuts)] if cuts else text
            contexts[i] = contexts[i] + tok.encode(text, add_special_tokens=False)  # decode -> re-encode
            action = parse_action(text, allow_search=not last)
            if action.kind == "answer":
                answered += 1
            elif action.kind == "search":
                queries.append((i, action.content))
                still.append(i)
            elif not last:
                contexts[i] += tok.encode(INVALID_ACTION_TEXT, add_special_tokens=False)
                still.append(i)
        if queries:
            hits = retriever.search([q for _, q in queries], 3)
            for (i, _), h in zip(queries, hits):
                contexts[i] += tok.encode(information(passages_body(h)), add_special_tokens=False)[:500]
        active = still
    dt = time.perf_counter() - t0 - measure
    return {"time": dt, "sampled": sampled, "wasted": wasted, "answered": answered, "turns": float("nan")}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    tok, model, prompts = build()
    from searchr1.rollout.backends.base import TurnParams
    from searchr1.rollout.backends.hf import HFBackend

    warm = HFBackend(model, tok).open([tok.encode(p) for p in prompts[:2]])
    warm.generate([0, 1], [[], []], [8, 8], TurnParams())  # warm-up
    ours = run_ours(tok, model, prompts)
    base = run_searchr1_loop(tok, model, prompts)
    n = len(prompts)
    print(f"{n} prompts, max_turns={MAX_TURNS}, per-turn budget {TURN_TOKENS} tokens, "
          f"tiny Qwen2 body (hidden 64, 2 layers, vocab {len(tok)}) + bigram protocol bias, 1 CPU thread")
    print(f"{'loop':<22}{'time s':>8}{'traj/s':>9}{'sampled tok':>13}{'tok/s':>9}{'wasted tok':>12}{'answered':>10}")
    for name, r in (("ours (RolloutEngine)", ours), ("Search-R1-style loop", base)):
        print(f"{name:<22}{r['time']:>8.2f}{n / r['time']:>9.2f}{r['sampled']:>13}{r['sampled'] / r['time']:>9.0f}"
              f"{r['wasted']:>12}{r['answered']:>10}")
    speedup = base["time"] / ours["time"]
    print(f"BENCH rollout_speedup_vs_searchr1_loop {speedup:.2f} x")
    print(f"BENCH rollout_wasted_tokens {ours['wasted']} tokens")
    print(f"BENCH rollout_searchr1_loop_wasted_tokens {base['wasted']} tokens")
    print(f"BENCH rollout_traj_per_s {n / ours['time']:.2f} traj/s")
    print(f"BENCH rollout_gen_tokens_per_s {ours['sampled'] / ours['time']:.0f} tok/s")



if __name__ == "__main__":
    main()
