"""``searchr1 pretrain`` (build/cache the demo's base model) and ``searchr1 demo`` (what ``make demo`` runs)."""
from __future__ import annotations

import argparse
import dataclasses
import sys


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
                   help="curriculum: single-hop steps, then mixed steps")
    d.add_argument("--group-size", type=int, default=None)
    d.add_argument("--questions-per-step", type=int, default=None)
    d.add_argument("--temperature", type=float, default=None, help="rollout sampling temperature")
    d.add_argument("--lr", type=float, default=None, help="policy learning rate")
    d.add_argument("--kl-coef", type=float, default=None)
    d.add_argument("--loss-agg", default=None, choices=("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"),
                   help="loss aggregation of the RL update")
    d.add_argument("--eval-every", type=int, default=None, help="held-out EM every N steps (0 = at the end)")
    d.add_argument("--base-model", default="", help="use this saved base model (skip pretraining)")
    d.add_argument("--cache-dir", default="runs/cache")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--threads", type=int, default=1, help="torch threads (1 = deterministic and polite)")
    d.set_defaults(func=run_demo_cli)


def demo_config_from_args(args):
    from searchr1.demo.config import DemoConfig, fast_config

    over = {"seed": args.seed, "out": args.out, "cache_dir": args.cache_dir, "base_model": args.base_model}
    for flag, key in (("algorithm", "algorithm"), ("topk", "topk"), ("max_turns", "max_turns"),
                      ("group_size", "group_size"), ("questions_per_step", "questions_per_step"),
                      ("temperature", "temperature"), ("lr", "lr"), ("kl_coef", "kl_coef"),
                      ("eval_every", "eval_every"), ("loss_agg", "loss_agg_mode")):
        if getattr(args, flag) is not None:
            over[key] = getattr(args, flag)
    if args.no_mask:
        over["mask_retrieved"] = False
    if args.steps:
        over["single_hop_steps"], over["mixed_steps"] = args.steps
    return fast_config(**over) if args.fast else DemoConfig(**over)


def run_demo_cli(args) -> int:
    import torch

    from searchr1.demo.run import run_demo, run_seeds

    torch.set_num_threads(args.threads)
    try:
        cfg = demo_config_from_args(args)
    except ValueError as e:
        print(f"searchr1 demo: {e}", file=sys.stderr)
        return 2
    if args.seeds > 1:
        run_seeds(cfg, args.seeds, progress=not args.no_progress)
    else:
        run_demo(cfg, progress=not args.no_progress)
    return 0


def run_pretrain(args) -> int:
    import torch

    from searchr1.demo.pretrain import PretrainConfig, build_base_model, ensure_base_model

    torch.set_num_threads(args.threads)
    cfg = PretrainConfig(seed=args.seed)
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    from tqdm.auto import tqdm

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
