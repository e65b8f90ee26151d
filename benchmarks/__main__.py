from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path


OPT_IN = {"scale"}
"""Benchmarks that take many minutes: run only when named (make bench B=scale)."""


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", help="run one benchmark, e.g. --only search (make bench B=search)")
    args = parser.parse_args()
    names = available()
    if args.only:
        if args.only not in names:
            print(f"unknown benchmark {args.only!r}; available: {', '.join(names)}", file=sys.stderr)
            return 2
        names = [args.only]
    else:
        names = [n for n in names if n not in OPT_IN]
    for name in names:
        print(f"\n=== benchmark: {name} ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").main()
        print(f"=== {name} done in {time.perf_counter() - t0:.1f}s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
