"""Run a study: every condition x seed is one run directory; finished runs are kept and not re-run.

One run (``<out>/runs/<condition>/seed-<s>/``): the seed's SearchWorld, BM25 and questions (dev and test
samples drawn from the seed, so every condition of a seed sees the same questions: a paired design), the
shipped base model, then

* ``rl`` / ``rejection-sampling``: train from the base for ``total_steps``, greedy dev EM every
  ``eval_every`` steps; with ``select: best-dev`` the weights of the evaluation with the best dev EM are
  kept (the first of ties; step 0, the base itself, is recorded for the curve but is not a candidate), with
  ``select: last`` the final weights;
* untrained baselines (``base+search``, ``rag``, ``direct``): the base model as is;

and the test split is scored once, after selection. ``result.json`` (written last) marks the run finished;
``settings.json`` records what it ran, and ``--resume`` refuses a finished run whose settings changed.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from searchr1.data.qa import QAExample
from searchr1.data.world import WorldConfig, generate_world
from searchr1.demo.config import DEMO_RELATIONS, DemoConfig
from searchr1.demo.pretrain import PretrainConfig, ensure_base_model, load_base_model
from searchr1.demo.report import compare_methods
from searchr1.demo.train import heldout_em, train_config
from searchr1.errors import ConfigError
from searchr1.rl.config import config_to_dict
from searchr1.rl.diagnostics import collapse_metrics
from searchr1.rl.sft import run_sft
from searchr1.rl.trainer import Trainer
from searchr1.rollout.engine import rollout_metrics
from searchr1.search.bm25 import BM25Config, BM25Retriever
from searchr1.study.config import Condition, StudyConfig, dump_yaml, rollout_budget

RESULT, SETTINGS, HISTORY = "result.json", "settings.json", "history.json"


@dataclass
class SeedEnv:
    """What every condition of one seed shares: the world's retriever and question samples."""
    retriever: BM25Retriever
    train: list[QAExample]
    dev: list[QAExample]
    test: list[QAExample]


def seed_env(cfg: StudyConfig, seed: int) -> SeedEnv:
    world = generate_world(_world_config(cfg, seed))
    retriever = BM25Retriever.build(world.documents, BM25Config(backend="numpy"))
    return SeedEnv(retriever, world.splits["train"], _sample(world.splits["dev"], cfg.dev_questions, seed),
                   _sample(world.splits["test"], cfg.test_questions, seed))


def _world_config(cfg: StudyConfig, seed: int) -> WorldConfig:
    return WorldConfig(seed=seed, people=cfg.people, works=0, relations=DEMO_RELATIONS, dev_frac=0.1,
                       test_frac=0.15)


def _sample(questions: list, n: int, seed: int) -> list:
    if not n or n >= len(questions):
        return list(questions)
    g = torch.Generator().manual_seed(seed)
    idx = sorted(torch.randperm(len(questions), generator=g)[:n].tolist())
    return [questions[i] for i in idx]


def run_settings(cfg: StudyConfig, cond: Condition, seed: int) -> dict:
    """What a run depends on; a finished run is reused only when this is unchanged."""
    return json.loads(json.dumps({
        "condition": asdict(cond), "seed": seed, "select": cfg.select, "world": asdict(_world_config(cfg, seed)),
        "run": {k: getattr(cfg, k) for k in ("total_steps", "eval_every", "dev_questions", "test_questions")},
        "train": config_to_dict(cfg.train_config(cond))}, default=str))


def check_out_dir(out: Path, resume: bool) -> None:
    finished = sorted(out.glob(f"runs/*/seed-*/{RESULT}"))
    if finished and not resume:
        raise ConfigError(f"{out} already holds {len(finished)} finished runs; pass --resume to keep them and "
                          "run the rest, or choose a new --out")


def finished_result(cfg: StudyConfig, cond: Condition, seed: int, run_dir: Path) -> dict | None:
    """The saved result of a finished run with unchanged settings; None when it has not finished."""
    if not (run_dir / RESULT).is_file():
        return None
    saved = json.loads((run_dir / SETTINGS).read_text()) if (run_dir / SETTINGS).is_file() else None
    if saved != run_settings(cfg, cond, seed):
        raise ConfigError(f"{run_dir} finished with other settings than the study declares now; give the "
                          "study's settings (see its study.yaml), delete that run directory to re-run it, or "
                          "choose a new --out")
    return json.loads((run_dir / RESULT).read_text())


def run_study(cfg: StudyConfig, out: Path, resume: bool = False, progress: bool = True, log=print,
              cache_dir: str = "runs/cache", only: list[str] | None = None) -> dict[str, dict[int, dict]]:
    """Run (or finish) every condition x seed (``only``: these conditions; the others' finished runs are
    still loaded); returns condition -> seed -> result."""
    out = Path(out)
    unknown = set(only or ()) - set(cfg.conditions)
    if unknown:
        raise ConfigError(f"--only {','.join(sorted(unknown))}: not conditions of study {cfg.name!r}; "
                          f"choose from {', '.join(cfg.conditions)}")
    check_out_dir(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.yaml").write_text(dump_yaml(cfg))
    base_path, _ = ensure_base_model(PretrainConfig(), cache_dir)
    model, tok = load_base_model(base_path)
    results = load_results(out, cfg) if resume else {n: {} for n in cfg.conditions}
    todo = {n: c for n, c in cfg.conditions.items() if not only or n in only}
    total, done = len(todo) * cfg.seeds, 0
    for seed in range(cfg.seeds):
        env = None
        for name, cond in todo.items():
            run_dir = out / "runs" / name / f"seed-{seed}"
            done += 1
            res = finished_result(cfg, cond, seed, run_dir) if resume else None
            if res is not None:
                log(f"[{done}/{total}] {name} seed {seed}: finished before, kept")
            else:
                env = env or seed_env(cfg, seed)
                res = run_one(cfg, cond, seed, env, model, tok, run_dir, progress)
                log(f"[{done}/{total}] {name} seed {seed}: test EM {res['test']['em']:.3f} (two-hop "
                    f"{res['test'].get('em_two-hop', float('nan')):.3f}), selected step {res['selected_step']}, "
                    f"{res['wall_seconds']:.0f} s")
            results[name][seed] = res
    return results


def run_one(cfg: StudyConfig, cond: Condition, seed: int, env: SeedEnv, model, tok, run_dir: Path,
            progress: bool = True) -> dict:
    """Train (if the condition trains), select on dev, score the test split once; write the run dir."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RESULT).unlink(missing_ok=True)
    (run_dir / SETTINGS).write_text(json.dumps(run_settings(cfg, cond, seed), indent=1))
    dcfg = DemoConfig(seed=seed, out=str(run_dir), train=cfg.train_config(cond), eval_every=cfg.eval_every,
                      eval_questions=cfg.dev_questions, test_questions=cfg.test_questions)
    policy, history, selected = model, [], {"step": 0, "dev_em": None}
    if cond.trained:
        policy, history, selected = train_and_select(cfg, cond, dcfg, model, tok, env, run_dir, progress)
    name = eval_method(cond)
    preds = compare_methods({name: (policy, tok)}, env.retriever, env.test, dcfg)[name]
    kinds = {q.id: q.metadata["type"] for q in env.test}
    per_q = {p.id: {"em": float(p.em), "type": kinds[p.id], "searches": p.searches} for p in preds}
    test = {"em": _mean(v["em"] for v in per_q.values()),
            "searches": _mean(v["searches"] for v in per_q.values())}
    for kind in sorted(set(kinds.values())):
        test[f"em_{kind}"] = _mean(v["em"] for v in per_q.values() if v["type"] == kind)
    (run_dir / HISTORY).write_text(json.dumps(history))
    result = {"condition": cond.name, "seed": seed, "method": cond.method, "eval_method": name,
              "selected_step": selected["step"], "selected_dev_em": selected["dev_em"],
              "rollout_budget": rollout_budget(dcfg.train) if cond.trained else 0,
              "test": test, "per_question": per_q, "wall_seconds": time.perf_counter() - t0}
    (run_dir / RESULT).write_text(json.dumps(result, indent=1))
    return result


def eval_method(cond: Condition) -> str:
    """The evaluation method (searchr1.eval.methods) that scores a condition's policy on test."""
    if cond.method in ("rl", "rejection-sampling"):
        return "search-r1" if cond.search else "r1"
    return cond.method


def train_and_select(cfg: StudyConfig, cond: Condition, dcfg: DemoConfig, model, tok, env: SeedEnv,
                     run_dir: Path, progress: bool) -> tuple[object, list[dict], dict]:
    """Train a copy of ``model``; returns (selected policy, per-step history, {"step", "dev_em"})."""
    tcfg = train_config(dcfg, cond.search, str(run_dir))
    trainer = Trainer(tcfg, policy=copy.deepcopy(model), tokenizer=tok,
                      retriever=env.retriever if cond.search else None, train_examples=env.train,
                      val_examples=[], log_to_disk=False)
    step = trainer.train_step if cond.method == "rl" else RejectionSampling(trainer).step
    history = [{"step": 0, **heldout_em(trainer, env.dev)}]
    best: dict = {"step": 0, "dev_em": None}
    best_state = None
    bar = tqdm(total=cfg.total_steps, desc=f"{cond.name} seed {dcfg.seed}", disable=not progress,
               dynamic_ncols=True, leave=False)
    for s in range(1, cfg.total_steps + 1):
        m = step()
        row = {"step": s, **{k: float(v) for k, v in m.items() if not k.startswith(("time/", "throughput/"))}}
        if s % cfg.eval_every == 0 or s == cfg.total_steps:
            row.update(heldout_em(trainer, env.dev))
            if best["dev_em"] is None or row["heldout/em"] > best["dev_em"]:
                best = {"step": s, "dev_em": row["heldout/em"]}
                best_state = {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}
        history.append(row)
        bar.update(1)
        bar.set_postfix(reward=f"{row.get('reward/mean', 0):.2f}", dev_em=f"{best['dev_em'] or 0:.2f}")
    bar.close()
    if cfg.select == "best-dev" and best_state is not None:
        trainer.policy.load_state_dict(best_state)
    else:
        best = {"step": cfg.total_steps, "dev_em": history[-1].get("heldout/em")}
    trainer.policy.eval()
    return trainer.policy, history, best


class RejectionSampling:
    """Rejection sampling at the RL runs' rollout budget: each step samples ``data.batch_size`` questions x
    ``algorithm.group_size`` trajectories with the current policy, keeps those with reward >=
    ``sft.rs_min_score`` and fine-tunes on them (one pass, ``sft.lr``, retrieved tokens masked as in RL)."""

    def __init__(self, trainer: Trainer):
        self.t = trainer
        params = [p for p in trainer.policy.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=trainer.cfg.sft.lr, weight_decay=0.0)

    def step(self) -> dict[str, float]:
        t, cfg = self.t, self.t.cfg
        G = cfg.algorithm.group_size
        q_idx = t.sampler.next(cfg.data.batch_size)
        exs = [t.train_examples[i] for i in q_idx for _ in range(G)]
        seed = (cfg.seed * 1_000_003 + t.step * 1009) % 2**31
        trajs, _ = t.rollout(exs, [i for i in q_idx for _ in range(G)], seed)
        scores, comps = t.reward_fn(trajs, exs)
        kept = [tr for tr, s in zip(trajs, scores) if s >= cfg.sft.rs_min_score]
        m = {**rollout_metrics(trajs), "reward/mean": sum(scores) / len(scores),
             **{f"reward/{k}": v for k, v in comps.items()}, **collapse_metrics(trajs, scores),
             "rs/kept": float(len(kept))}
        if kept:
            m.update(run_sft(t.policy, kept, lr=cfg.sft.lr, epochs=1, batch_size=len(kept),
                             micro_batch_size=cfg.data.micro_batch_size, device=t.device, seed=seed,
                             mask_retrieved=cfg.algorithm.mask_retrieved,
                             max_grad_norm=cfg.optimizer.max_grad_norm, optimizer=self.opt))
        t.step += 1
        return m


def load_results(out: Path, cfg: StudyConfig) -> dict[str, dict[int, dict]]:
    """condition -> seed -> result of the finished runs under ``out`` (for the report); a finished run whose
    settings differ from ``cfg``'s is refused, as by --resume."""
    results: dict[str, dict[int, dict]] = {n: {} for n in cfg.conditions}
    for name, cond in cfg.conditions.items():
        for s in range(cfg.seeds):
            res = finished_result(cfg, cond, s, out / "runs" / name / f"seed-{s}")
            if res is not None:
                results[name][s] = res
    return results


def load_history(out: Path, cond: str, seed: int) -> list[dict]:
    p = out / "runs" / cond / f"seed-{seed}" / HISTORY
    return json.loads(p.read_text()) if p.is_file() else []


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")
