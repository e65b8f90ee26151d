"""Probe: ``torch.compile`` vs eager on the trainer benchmark's models (not part of ``make bench``).

Times the teacher-forced training pass (forward + backward over 8 prompts x 4 samples, both the
full and the shared-prompt path) and ``HFBackend`` decoding of 32 rows x 32 tokens, eager and with
``torch.compile(model.forward, dynamic=True)``, one CPU thread, the two alternating. Prints the
warm-up (compilation) time, the fastest call of each side and how far the compiled logits are
from the eager ones. ``python -m benchmarks.probe_compile [tiny|small]``;
results in ``docs/benchmarks.md``.
"""
from __future__ import annotations

import sys
import time

import torch
from torch import Tensor

from benchmarks.bench_trainer import B_QUESTIONS, G, _model, _tokenizer
from searchr1.rl.batch import FULL, SHARED, collate, response_logits
from searchr1.rollout.backends.base import TurnParams
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.types import Trajectory


def _batch(seed: int, pad_id: int):
    """8 prompts of 30-37 tokens x 4 responses of 20-32 tokens."""
    g = torch.Generator().manual_seed(seed)
    trajs = []
    for q in range(B_QUESTIONS):
        prompt = torch.randint(0, 250, (30 + (q + seed) % 8,), generator=g).tolist()
        for k in range(G):
            n = 20 + (q * 3 + k + seed) % 13
            trajs.append(Trajectory(prompt_ids=prompt, response_ids=torch.randint(0, 250, (n,), generator=g).tolist(),
                                    response_mask=[1] * n, group_id=q))
    return collate(trajs, [0.0] * len(trajs), pad_id=pad_id)


def _train_pass(model, b, mode: str) -> tuple[float, Tensor]:
    """Seconds of one forward + backward, and the logits (detached)."""
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    logits = response_logits(model, b, 1.0, mode)
    (logits.logsumexp(-1) * b.valid_mask).sum().backward()
    return time.perf_counter() - t0, logits.detach()


def _decode(backend, prompts) -> tuple[float, list]:
    session = backend.open(prompts, seed=0)
    t0 = time.perf_counter()
    gens = session.generate(range(len(prompts)), [[]] * len(prompts), [32] * len(prompts), TurnParams(temperature=1.0))
    dt = time.perf_counter() - t0
    session.close()
    return dt, [g.token_ids for g in gens]


def _compiled(model):
    model.forward = torch.compile(model.forward, dynamic=True)
    return model


def main(rounds: int = 4) -> None:
    """Eager and compiled calls alternate (the machine's load drifts); the fastest of each side counts."""
    torch.set_num_threads(1)
    size = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    tok = _tokenizer()
    batches = [_batch(seed, tok.pad_token_id) for seed in range(1, 7)]
    for mode in (FULL, SHARED):
        eager, comp = _model(len(tok), size).train(), _compiled(_model(len(tok), size).train())
        t0 = time.perf_counter()
        for b in batches:                                   # compiles, for every shape it will see
            _train_pass(comp, b, mode)
        first = time.perf_counter() - t0
        best, diff = {"eager": 1e9, "compiled": 1e9}, 0.0
        for _ in range(rounds):
            for b in batches:
                te, le = _train_pass(eager, b, mode)
                tc, lc = _train_pass(comp, b, mode)
                best["eager"], best["compiled"] = min(best["eager"], te), min(best["compiled"], tc)
                diff = max(diff, float((le - lc)[b.valid_mask.bool()].abs().max()))
        print(f"{size} training pass {mode:<14} eager {best['eager'] * 1e3:7.1f} ms   compiled "
              f"{best['compiled'] * 1e3:7.1f} ms ({best['eager'] / best['compiled']:.2f}x), warm-up {first:.0f} s, "
              f"max |logit diff| {diff:.1e}", flush=True)
    prompts = [tok.encode(f"what is the name of thing number {i}") for i in range(B_QUESTIONS) for _ in range(G)]
    eager, comp = HFBackend(_model(len(tok), size).eval(), tok), HFBackend(_compiled(_model(len(tok), size).eval()), tok)
    first, _ = _decode(comp, prompts)
    best, same = {"eager": 1e9, "compiled": 1e9}, True
    for _ in range(rounds):
        te, ids_e = _decode(eager, prompts)
        tc, ids_c = _decode(comp, prompts)
        best["eager"], best["compiled"] = min(best["eager"], te), min(best["compiled"], tc)
        same &= ids_e == ids_c
    print(f"{size} decoding 32 x 32   eager {best['eager'] * 1e3:7.1f} ms   compiled {best['compiled'] * 1e3:7.1f} ms "
          f"({best['eager'] / best['compiled']:.2f}x), warm-up {first:.0f} s, same tokens: {same}")


if __name__ == "__main__":
    main()
