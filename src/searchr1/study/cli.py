"""``searchr1 study``: run a declared grid of conditions over seeds and report the paper's findings with CIs."""
from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

import torch

from searchr1.study.config import load_study
from searchr1.study.report import write_study_report
from searchr1.study.run import load_results, run_study


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="reproduce the paper's findings on SearchWorld over seeds, with "
                                            "bootstrap CIs", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="quick", help="quick | paper-findings | ppo-critic | demo-defaults | a "
                                                     "study YAML file (may `extends:` a preset)")
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the study's)")
    p.add_argument("--out", default="", help="output directory (default runs/study-<preset>)")
    p.add_argument("--resume", action="store_true", help="keep finished runs under --out and run the rest")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a study key, e.g. --set run.total_steps=4 --set select=last (repeatable)")
    p.add_argument("--only", default="", help="run only these conditions (comma-separated); the report "
                                              "still shows every condition, unrun ones as 'not run'")
    p.add_argument("--report-only", action="store_true", help="rewrite report.md from the finished runs")
    p.add_argument("--cache-dir", default="runs/cache", help="where a non-shipped base model is cached")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = deterministic and polite)")
    p.set_defaults(func=run_study_cli)


def run_study_cli(args) -> int:
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds}: give a number >= 1")
    cfg = load_study(args.preset, args.overrides, args.seeds)
    out = Path(args.out or f"runs/study-{cfg.name}")
    command = " ".join(["searchr1 study --preset", shlex.quote(args.preset), "--seeds", str(cfg.seeds), "--out",
                        shlex.quote(str(out)), *(f"--set {shlex.quote(o)}" for o in args.overrides)])
    t0 = time.perf_counter()
    if args.report_only:
        results = load_results(out, cfg)
        if not any(results.values()):
            raise FileNotFoundError(f"--report-only: no finished runs under {out}; run the study first")
        wall = None
    else:
        torch.set_num_threads(args.threads)
        results = run_study(cfg, out, resume=args.resume, progress=not args.no_progress,
                            cache_dir=args.cache_dir, only=[c for c in args.only.split(",") if c] or None)
        wall = time.perf_counter() - t0
    path = write_study_report(cfg, results, out, command, wall)
    print(f"wrote {path}")
    return 0
