"""``searchr1 pretrain`` (build/cache the demo's base model) and ``searchr1 demo`` (what ``make demo`` runs)."""
from __future__ import annotations

import argparse
import dataclasses

import torch
from tqdm.auto import tqdm

from searchr1.demo.config import DemoConfig, demo_train_config, fast_config
from searchr1.demo.pretrain import PretrainConfig, build_base_model, ensure_base_model
from searchr1.demo.run import run_demo, run_seeds


def register(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="build the demo's tiny copy-capable base model (cached)",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="", help="save here instead of the cache directory")
    p.add_argument("--cache-dir", default="runs/cache")
    p.add_argument("--steps", type=int, default=None, help="pretraining steps (default: PretrainConfig.steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.set_defaults(func=run_pretrain)

    d = subparsers.add_parser("demo", help="teach a tiny model to search SearchWorld with RL on CPU and compare "
                                           "with r1 / rag / direct", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--seeds", type=int, default=1, help="run N seeds and report mean ± std")
    d.add_argument("--fast", action="store_true", help="seconds-scale smoke run (tiny world/model, 2 steps)")
    d.add_argument("--algorithm", default=None, help="grpo | ppo | rloo | reinforce")
    d.add_argument("--no-mask", action="store_true", help="ablation: retrieved tokens get a loss too")
    d.add_argument("--topk", type=int, default=None)
    d.add_argument("--max-turns", type=int, default=None)
    d.add_argument("--steps", type=int, nargs=2, metavar=("SINGLE", "MIXED"), default=None,
                   help="curriculum: single-hop steps, then mixed steps (total_steps = SINGLE + MIXED)")
    d.add_argument("--group-size", type=int, default=None)
    d.add_argument("--questions-per-step", type=int, default=None)
    d.add_argument("--temperature", type=float, default=None, help="rollout sampling temperature")
    d.add_argument("--lr", type=float, default=None, help="learning rate (policy and critic)")
    d.add_argument("--kl-coef", type=float, default=None)
    d.add_argument("--loss-agg", default=None, choices=("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
                   help="loss aggregation of the RL update")
    d.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override any RL setting of configs/demo.yaml, e.g. --set algorithm.clip_eps=0.1 (repeatable)")
    d.add_argument("--eval-every", type=int, default=None, help="held-out EM every N steps (0 = at the end)")
    d.add_argument("--base-model", default="", help="use this saved base model (skip pretraining)")
    d.add_argument("--cache-dir", default="runs/cache")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--threads", type=int, default=1, help="torch threads (1 = deterministic and polite)")
    d.set_defaults(func=run_demo_cli)


# flag -> TrainConfig keys it sets (the demo's RL settings live in configs/demo.yaml)
FLAG_KEYS = {"algorithm": ("algorithm.name",), "topk": ("rollout.topk",), "max_turns": ("rollout.max_turns",),
             "group_size": ("algorithm.group_size",), "temperature": ("rollout.temperature",),
             "questions_per_step": ("data.batch_size", "data.mini_batch_size"),
             "lr": ("optimizer.actor_lr", "optimizer.critic_lr"), "kl_coef": ("algorithm.kl_coef",),
             "loss_agg": ("algorithm.loss_agg_mode",)}


def demo_config_from_args(args):
    overrides = []
    for flag, keys in FLAG_KEYS.items():
        if getattr(args, flag) is not None:
            overrides += [f"{k}={getattr(args, flag)}" for k in keys]
    if args.no_mask:
        overrides.append("algorithm.mask_retrieved=false")
    fields = {"seed": args.seed, "out": args.out, "cache_dir": args.cache_dir, "base_model": args.base_model}
    if args.steps:
        fields["single_hop_steps"] = args.steps[0]
        overrides.append(f"total_steps={sum(args.steps)}")
    if args.eval_every is not None:
        fields["eval_every"] = args.eval_every
    overrides += args.overrides
    if args.fast:
        return fast_config(overrides, **fields)
    return DemoConfig(train=demo_train_config(overrides), **fields)


def run_demo_cli(args) -> int:
    torch.set_num_threads(args.threads)
    cfg = demo_config_from_args(args)
    if args.seeds > 1:
        run_seeds(cfg, args.seeds, progress=not args.no_progress)
    else:
        run_demo(cfg, progress=not args.no_progress)
    return 0


def run_pretrain(args) -> int:
    torch.set_num_threads(args.threads)
    cfg = PretrainConfig(seed=args.seed)
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    bar = tqdm(total=cfg.steps, desc="pretrain")

    def progress(step, loss):
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}")

    if args.out:
        stats = build_base_model(cfg, args.out, progress)
        path = args.out
    else:
        path, built = ensure_base_model(cfg, args.cache_dir, progress)
        stats = {"cached": not built}
    bar.close()
    print(f"base model: {path} {stats}")
    return 0
