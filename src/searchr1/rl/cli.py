"""``searchr1 train --config configs/X.yaml [key=value ...] [--resume] [--recipe NAME]``.

``--recipe`` is a shorthand: ``ppo | grpo | rloo | reinforce`` set ``algorithm.name`` (and
``recipe=rl``); ``sft`` and ``rejection-sampling`` set ``recipe``. Writing the same thing
as an override (``algorithm.name=ppo``) is equivalent; a contradiction is an error.
"""
from __future__ import annotations

import argparse
import json
import sys

from searchr1.errors import UsageError
from searchr1.rl.checkpoint import start_run
from searchr1.rl.config import ALGORITHMS, RECIPES, load_config
from searchr1.rl.distributed import current, init_distributed, shard
from searchr1.rl.models import save_final
from searchr1.rl.sft import load_sft_records, rejection_sampling, run_sft
from searchr1.rl.run_report import public_config
from searchr1.rl.trainer import Trainer


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="RL (PPO/GRPO), SFT or rejection-sampling training",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML preset, e.g. configs/tiny-cpu.yaml (defaults when omitted)")
    p.add_argument("overrides", nargs="*", help="dotted overrides: algorithm.name=grpo rollout.max_turns=2")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in output_dir from its newest readable checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an output_dir holding another run: move that run to output_dir/previous-<n>/")
    p.add_argument("--recipe", choices=RECIPES, help="ppo | grpo | rloo | reinforce | sft | rejection-sampling")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run)


def recipe_overrides(recipe: str | None, overrides: list[str]) -> list[str]:
    if recipe is None:
        return overrides
    given = dict(o.split("=", 1) for o in overrides if "=" in o)
    extra = [f"algorithm.name={recipe}", "recipe=rl"] if recipe in ALGORITHMS else [f"recipe={recipe}"]
    for item in extra:
        k, v = item.split("=", 1)
        if k in given and given[k] != v:
            raise UsageError(f"--recipe {recipe} contradicts the override {k}={given[k]}; keep one of them")
    return overrides + extra


def run(args) -> int:
    cfg = load_config(args.config, recipe_overrides(args.recipe, list(args.overrides)))
    if args.print_config:
        print(json.dumps(public_config(cfg), indent=2, default=str))
        return 0
    cfg.check_inputs()   # missing files fail here, before any model loads

    init_distributed(cfg.device, group_of_one=cfg.distributed.strategy == "fsdp")
    # claim output_dir before loading anything: a used directory or a --resume without checkpoints fails at once
    run_id = start_run(cfg.output_dir, args.resume, args.overwrite) if cfg.recipe != "sft" and current().is_main \
        else None
    trainer = Trainer(cfg, run_id=run_id)
    if cfg.recipe == "rl":
        metrics = trainer.fit(resume=args.resume)
    elif cfg.recipe == "sft":
        metrics = _sft(trainer, cfg)
    else:
        metrics = rejection_sampling(trainer, cfg.sft.rs_rounds, cfg.sft.rs_min_score)
        trainer.save()
    if trainer.dist.is_main:
        if cfg.recipe != "rl":
            save_final(trainer.policy, trainer.tokenizer, trainer.out / "final", lora=cfg.model.lora_rank > 0)
        print(json.dumps({k: round(v, 5) for k, v in metrics.items()}, indent=1))
        if trainer.stop_reason:
            print(f"stopped early: {trainer.stop_reason}", file=sys.stderr)
    return 0


def _sft(trainer, cfg) -> dict:
    trajs = shard(load_sft_records(cfg.sft.train_file, trainer.tokenizer), trainer.dist)
    return run_sft(trainer.policy, trajs, lr=cfg.sft.lr, epochs=cfg.sft.epochs,
                   batch_size=cfg.data.mini_batch_size, micro_batch_size=cfg.data.micro_batch_size,
                   device=trainer.device, seed=cfg.seed, mask_retrieved=cfg.algorithm.mask_retrieved,
                   autocast=cfg.model.bf16_autocast, max_grad_norm=cfg.optimizer.max_grad_norm)
