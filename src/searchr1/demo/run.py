"""``searchr1 demo``: world -> BM25 -> base model -> RL with search (and without) -> comparison -> runs/demo/.

Deterministic for a seed on CPU: every random choice flows from ``DemoConfig.seed``
(world, rollout sampling seeds, question order) and torch runs single-threaded.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import torch

from searchr1.data.world import generate_world
from searchr1.data.world_io import write_world
from searchr1.demo.config import DemoConfig
from searchr1.demo.pretrain import ensure_base_model, load_base_model
from searchr1.demo.probe import probe_policy
from searchr1.demo.report import aggregate, compare_methods, console_table, plot_curves, summarize, write_report
from searchr1.demo.train import rollout_config, run_rl
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.search.index import save_index


class _Bar:
    """tqdm bar showing step, reward, held-out EM and elapsed time."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)
        self.em = float("nan")

    def __call__(self, step: int, row: dict) -> None:
        self.em = row.get("heldout/em", self.em)
        self.bar.update(1 if step else 0)  # step 0 = the base model's held-out EM
        self.bar.set_postfix(reward=f"{row.get('reward/mean', 0):.2f}", heldout_em=f"{self.em:.2f}",
                             searches=f"{row.get('rollout/searches', 0):.2f}")

    def close(self):
        self.bar.close()


def run_demo(cfg: DemoConfig, progress: bool = True, log=print) -> dict:
    """Run the whole demo once; writes ``cfg.out`` and returns the summary dict."""
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    world = generate_world(cfg.world)
    retriever = BM25Retriever.build(world.documents, BM25Config(backend="numpy"))
    write_world(world, out / "world", retriever)
    save_index(retriever, out / "world" / "index")   # `searchr1 ask` / `serve-agent` use it by default
    timings["world+index"] = time.perf_counter() - t
    log(f"world: {len(world.documents)} passages, {len(world.questions)} questions (seed {cfg.seed})")

    t = time.perf_counter()
    if cfg.base_model:
        base_path, built = Path(cfg.base_model), False
    else:
        bar = _Bar(cfg.pretrain.steps, "pretrain (random-policy traces)", progress)
        base_path, built = ensure_base_model(cfg.pretrain, cfg.cache_dir,
                                             lambda s, loss: (bar.bar.update(1), bar.bar.set_postfix(loss=f"{loss:.3f}")))
        bar.close()
    model, tok = load_base_model(base_path)
    timings["base_model"] = time.perf_counter() - t
    log(f"base model: {base_path} ({'built now' if built else 'cached'})")

    dev = _sample(world.splits["dev"], cfg.eval_questions, cfg.seed)
    test = _sample(world.splits["test"], cfg.test_questions, cfg.seed)
    t = time.perf_counter()
    probe = probe_policy(model, tok, retriever, dev, rollout_config(cfg, search=True))
    timings["probe"] = time.perf_counter() - t
    log("base probe: " + ", ".join(f"{k}={v:.2f}" for k, v in probe.items()))

    histories, policies = {}, {}
    for name, search in (("search-r1", True), ("r1", False)):
        if name not in cfg.methods:
            continue
        t = time.perf_counter()
        bar = _Bar(cfg.total_steps, f"RL {name} ({cfg.train.algorithm.name})", progress)
        policies[name], histories[name] = run_rl(cfg, model, tok, retriever, world.splits["train"], dev, search,
                                                 str(out / f"train-{name}"), bar)
        bar.close()
        timings[f"rl_{name}"] = time.perf_counter() - t

    t = time.perf_counter()
    runs = {n: (policies.get(n, model), tok) for n in cfg.methods}
    preds = compare_methods(runs, retriever, test, cfg)
    timings["evaluation"] = time.perf_counter() - t

    if "search-r1" in policies:
        policies["search-r1"].save_pretrained(out / "checkpoint")
        tok.save_pretrained(out / "checkpoint")
    with (out / "predictions.jsonl").open("w") as f:
        for ps in preds.values():
            for p in ps:
                f.write(json.dumps(p.to_dict()) + "\n")
    (out / "history.json").write_text(json.dumps(histories, indent=1))
    plot_curves(histories, out / "curves.png")
    wall = time.perf_counter() - t_start
    timings["total"] = wall
    summary = summarize(preds, test, wall, cfg.total_steps)
    summary.update({"seed": cfg.seed, "base_probe": probe, "timings": timings, "base_model": str(base_path),
                    "final_train": {n: h[-1] for n, h in histories.items()}})
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(out, summary, settings(cfg), probe, timings)
    log(console_table(summary))
    log(f"wrote {out}/ in {wall:.0f} s")
    return summary


def run_seeds(cfg: DemoConfig, seeds: int, progress: bool = True, log=print) -> dict:
    """``--seeds N``: the demo for seeds cfg.seed .. cfg.seed+N-1, each in ``out/seed-S``; mean ± std report."""
    summaries = []
    for s in range(cfg.seed, cfg.seed + seeds):
        sub = dataclasses.replace(cfg, seed=s, out=str(Path(cfg.out) / f"seed-{s}"),
                                  world=dataclasses.replace(cfg.world))
        summaries.append(run_demo(sub, progress, log))
    agg = aggregate(summaries)
    out = Path(cfg.out)
    (out / "summary_seeds.json").write_text(json.dumps(agg, indent=2))
    first = summaries[0]
    write_report(out, first, settings(cfg), first["base_probe"], first["timings"], seeds_summary=agg)
    return agg


def settings(cfg: DemoConfig) -> dict:
    return dataclasses.asdict(cfg)


def _sample(questions: list, n: int, seed: int) -> list:
    if not n or n >= len(questions):
        return list(questions)
    return sorted(random.Random(seed).sample(questions, n), key=lambda q: q.id)
