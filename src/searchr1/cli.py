"""One entry point: ``searchr1 <command>``.

Each area owns its subcommands in a ``cli`` module exposing ``register(subparsers)``; a
subcommand sets ``func`` (called with the parsed args, returns an exit code). Only the area
of the command being run is imported, so ``searchr1 --help`` and light commands start fast.

Errors: expected failures (:class:`~searchr1.errors.SearchR1Error` and its subclasses,
``OSError``, ``ValueError`` from validation) print one ``error: …`` line and exit 2 (usage) or
1 (runtime); ``--debug`` or ``SEARCHR1_DEBUG=1`` shows the traceback instead. Anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from searchr1 import __version__
from searchr1.errors import SearchR1Error

# command -> (module that registers it, one-line help); the order is the order of ``searchr1 --help``
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("searchr1.search.cli", "build or inspect corpora"),
    "index": ("searchr1.search.cli", "build a BM25 or dense index from a corpus"),
    "search": ("searchr1.search.cli", "query an index from the command line"),
    "serve": ("searchr1.search.cli", "serve an index over HTTP (Search-R1 /retrieve schema)"),
    "data": ("searchr1.data.cli", "convert and inspect QA data sets"),
    "world": ("searchr1.data.world_cli", "generate SearchWorld: a fictional corpus + QA splits only search can answer"),
    "train": ("searchr1.rl.cli", "RL (PPO/GRPO), SFT or rejection-sampling training"),
    "plan": ("searchr1.rl.plan", "estimate per-GPU training memory of a config (ddp, fsdp, offload, LoRA)"),
    "eval": ("searchr1.eval.cli", "evaluate methods (direct, cot, rag, ircot, search-o1, search-r1, r1) on QA sets"),
    "ask": ("searchr1.eval.cli", "answer one question with search, printing the trajectory live"),
    "wiki-qa": ("searchr1.eval.cli", "build a small real-Wikipedia QA set from the wiki summaries corpus"),
    "serve-agent": ("searchr1.agent.cli", "serve the trained agent: OpenAI-compatible /v1/chat/completions"),
    "pretrain": ("searchr1.demo.cli", "build the demo's tiny copy-capable base model (cached)"),
    "demo": ("searchr1.demo.cli", "teach a tiny model to search SearchWorld with RL on CPU and compare baselines"),
}
DEBUG_ENV = "SEARCHR1_DEBUG"


def _add_global_options(parser: argparse.ArgumentParser, default=0) -> None:
    parser.add_argument("-v", "--verbose", action="count", default=default, help="more log output (debug)")
    parser.add_argument("-q", "--quiet", action="count", default=default, help="less log output (warnings only)")
    parser.add_argument("--debug", action="store_true", default=default or False,
                        help=f"show tracebacks of expected errors (or {DEBUG_ENV}=1)")


class _CommandParser(argparse.ArgumentParser):
    """Subcommand parsers accept the global options too (``searchr1 eval ... -v``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _add_global_options(self, default=argparse.SUPPRESS)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser (``command`` None), or one that imports only ``command``'s area (none for "")."""
    parser = argparse.ArgumentParser(
        prog="searchr1",
        description="Train language models with RL to reason and call a search engine (Search-R1).",
    )
    parser.add_argument("--version", action="version", version=f"searchr1 {__version__}")
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_CommandParser)
    if command is None:
        wanted = {m for m, _ in COMMANDS.values()}
    else:
        wanted = {COMMANDS[command][0]} if command in COMMANDS else set()
    registered: set[str] = set()
    for module in dict.fromkeys(m for m, _ in COMMANDS.values()):
        if module in wanted:
            importlib.import_module(module).register(sub)
            registered.update(sub.choices)
    for name, (_, help_text) in COMMANDS.items():
        if name not in registered:   # listed in --help; its area is imported only when it runs
            sub.add_parser(name, help=help_text)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def configure_logging(level: int) -> None:
    """``searchr1.*`` loggers at ``level`` on stderr; other libraries stay at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    log = logging.getLogger("searchr1")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def log_level(verbose: int, quiet: int) -> int:
    """INFO by default; -v DEBUG; -q WARNING; -qq ERROR."""
    n = verbose - quiet
    return logging.DEBUG if n > 0 else logging.INFO if n == 0 else logging.WARNING if n == -1 else logging.ERROR


def error_line(exc: BaseException) -> str:
    """The one line printed for an expected error."""
    msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, OSError) and not isinstance(exc, SearchR1Error) and exc.filename and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    return " ".join((msg or type(exc).__name__).split())


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, SearchR1Error):
        return exc.exit_code
    return 2 if isinstance(exc, ValueError) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv) or "")
    args = parser.parse_args(argv)
    configure_logging(log_level(args.verbose, args.quiet))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (SearchR1Error, OSError, ValueError) as e:
        if debug:
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return exit_code(e)


if __name__ == "__main__":
    sys.exit(main())
