"""One entry point: ``searchr1 <command>``.

Each area owns its subcommands in a ``cli`` module exposing ``register(subparsers)``;
a subcommand sets ``func`` (called with the parsed args, returns an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, what it provides) — the order is the order of ``searchr1 --help``.
COMMAND_MODULES = [
    "searchr1.search.cli",   # corpus, index, search, serve
    "searchr1.data.cli",     # data
    "searchr1.data.world_cli",  # world
    "searchr1.rl.cli",       # train
    "searchr1.eval.cli",     # eval, ask
    "searchr1.demo.cli",     # pretrain, demo
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="searchr1",
        description="Train language models with RL to reason and call a search engine (Search-R1).",
    )
    from searchr1 import __version__

    parser.add_argument("--version", action="version", version=f"searchr1 {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # that area has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
