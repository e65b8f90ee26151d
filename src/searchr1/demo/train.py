"""RL for the demo through the project's trainer (``searchr1.rl.trainer.Trainer``), with a curriculum.

The demo drives ``Trainer.train_step`` itself so it can (1) switch the question pool from single-hop to
single-hop + two-hop after ``single_hop_steps`` (``Trainer.set_train_examples``; two-hop needs three right
choices in a row: search the subject, search the bridge, copy the answer), and (2) measure held-out EM per
question type on the dev split for the curves.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

from searchr1.data.qa import QAExample
from searchr1.demo.config import DemoConfig
from searchr1.rl.config import TrainConfig
from searchr1.rl.trainer import Trainer, score_trajectories
from searchr1.rollout.config import RolloutConfig
from searchr1.search.base import Retriever

CURVE_KEYS = ("reward/mean", "rollout/searches", "rollout/response_len", "rollout/masked_frac")


def train_config(cfg: DemoConfig, search: bool, out_dir: str) -> TrainConfig:
    """``cfg.train`` for the run with search (``search-r1``) or without it (``r1``: one turn, its template)."""
    t = cfg.train
    rollout = dataclasses.replace(t.rollout, max_turns=t.rollout.max_turns if search else 1, search_enabled=search)
    data = dataclasses.replace(t.data, prompt_template="search-r1" if search else "r1")
    return dataclasses.replace(t, rollout=rollout, data=data, output_dir=out_dir)


def rollout_config(cfg: DemoConfig, search: bool) -> RolloutConfig:
    return train_config(cfg, search, cfg.out).rollout


def heldout_em(trainer: Trainer, questions: list[QAExample], greedy: bool = True) -> dict[str, float]:
    """EM on ``questions`` (greedy, or sampled at the rollout temperature with the trainer's seed):
    overall and per ``metadata["type"]``; plus searches per question."""
    if not questions:
        return {}
    trajs, _ = trainer.rollout(questions, list(range(len(questions))), seed=trainer.cfg.seed, greedy=greedy)
    scores, _ = score_trajectories(trajs, questions, trainer.tokenizer, "em")
    out = {"heldout/em": sum(scores) / len(scores), "heldout/searches": sum(t.searches for t in trajs) / len(trajs)}
    for kind in sorted({q.metadata["type"] for q in questions}):
        idx = [i for i, q in enumerate(questions) if q.metadata["type"] == kind]
        out[f"heldout/em_{kind}"] = sum(scores[i] for i in idx) / len(idx)
        out[f"heldout/searches_{kind}"] = sum(trajs[i].searches for i in idx) / len(idx)
    return out


def run_rl(cfg: DemoConfig, policy, tokenizer, retriever: Retriever | None, train: list[QAExample],
           dev: list[QAExample], search: bool, out_dir: str,
           on_step: Callable[[int, dict], None] | None = None) -> tuple[object, list[dict]]:
    """Train a copy of ``policy``; returns (trained policy, per-step metrics history)."""
    policy = copy.deepcopy(policy)
    single = [q for q in train if q.metadata.get("type") == "single-hop"] or train
    tcfg = train_config(cfg, search, out_dir)
    trainer = Trainer(tcfg, policy=policy, tokenizer=tokenizer, retriever=retriever if search else None,
                      train_examples=single, val_examples=[], log_to_disk=False)
    history: list[dict] = []
    if cfg.eval_every:  # the curves start from the base model
        history.append({"step": 0, **heldout_em(trainer, dev)})
        if on_step:
            on_step(0, history[-1])
    t0 = time.perf_counter()
    for step in range(cfg.total_steps):
        if step == cfg.single_hop_steps and len(single) != len(train):   # stage 2 (at step 0 by default)
            trainer.set_train_examples(train, seed=cfg.seed + 1)
        m = trainer.train_step()
        row = {"step": step + 1, **{k: float(m[k]) for k in CURVE_KEYS if k in m},
               "actor/kl": float(m.get("actor/kl", 0.0)),
               "actor/skipped_zero_adv": float(m.get("actor/skipped_zero_adv", 0.0)), "elapsed": time.perf_counter() - t0}
        if (cfg.eval_every and (step + 1) % cfg.eval_every == 0) or step + 1 == cfg.total_steps:
            row.update(heldout_em(trainer, dev))
        history.append(row)
        if on_step:
            on_step(step + 1, row)
    trainer.policy.eval()
    return trainer.policy, history
