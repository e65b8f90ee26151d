"""``searchr1 data``: convert QA files between formats and look inside them.

    searchr1 data convert IN OUT [--to searchr1-parquet|flashrag-jsonl] [--data-source NAME]
    searchr1 data show FILE [--limit N]

IN / FILE is anything ``load_qa`` accepts: a FlashRAG JSONL file, a Search-R1
parquet file, a saved Hugging Face dataset directory, or a data set name.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from searchr1.data.load import load_qa
from searchr1.data.prompts import TEMPLATES
from searchr1.data.qa import DataError, write_flashrag_jsonl
from searchr1.data.searchr1_format import write_searchr1_parquet

FORMATS = {"searchr1-parquet": ".parquet", "flashrag-jsonl": ".jsonl"}


def _count(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", default=None, help="split of a name or a directory (default: the paper's eval split)")
    p.add_argument("--limit", type=_count, default=None, help="only the first N examples (show: default 5)")
    p.add_argument("--data-dir", default=None, help="where named data sets live (default: $SEARCHR1_DATA_DIR "
                                                    "or ~/.cache/searchr1/data)")
    p.add_argument("--download", action="store_true", help="fetch a missing named data set from the HF hub")


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="convert and inspect QA data sets",
                                 description="Convert and inspect QA data sets (FlashRAG JSONL, Search-R1 parquet).")
    sub = data.add_subparsers(dest="data_command", metavar="<data command>")

    def usage(args) -> int:
        data.print_help()
        return 2

    data.set_defaults(func=usage)

    conv = sub.add_parser("convert", help="convert between FlashRAG JSONL and Search-R1 parquet")
    conv.add_argument("input", help="file, directory or data set name")
    conv.add_argument("output", help="output file (.parquet or .jsonl)")
    conv.add_argument("--to", choices=sorted(FORMATS), default=None,
                      help="output format (default: from the output suffix)")
    conv.add_argument("--data-source", default=None,
                      help="Search-R1 data_source for every row (default: each example's, else 'nq')")
    conv.add_argument("--out-split", default=None, help="extra_info.split written to parquet (default: --split or train)")
    conv.add_argument("--template", default="search-r1", choices=sorted(t for t in TEMPLATES if t != "rag"),
                      help="prompt template for the parquet 'prompt' column")
    _add_source_args(conv)
    conv.set_defaults(func=cmd_convert)

    show = sub.add_parser("show", help="print examples of a QA file")
    show.add_argument("file", help="file, directory or data set name")
    show.add_argument("--json", action="store_true", help="one FlashRAG JSON object per line")
    _add_source_args(show)
    show.set_defaults(func=cmd_show)


def _target_format(args) -> str:
    if args.to:
        return args.to
    suffix = Path(args.output).suffix
    for name, ext in FORMATS.items():
        if suffix == ext:
            return name
    raise DataError(f"cannot tell the output format from {args.output!r}; name it .parquet or .jsonl, "
                    "or pass --to searchr1-parquet|flashrag-jsonl.")


def cmd_convert(args) -> int:
    try:
        fmt = _target_format(args)
        examples = load_qa(args.input, args.split, args.limit, data_dir=args.data_dir, download=args.download)
        if fmt == "searchr1-parquet":
            n = write_searchr1_parquet(examples, args.output, split=args.out_split or args.split or "train",
                                       data_source=args.data_source, template=args.template)
        else:
            n = write_flashrag_jsonl(examples, args.output)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {n} examples to {args.output} ({fmt})")
    return 0


def cmd_show(args) -> int:
    limit = args.limit if args.limit is not None else 5
    try:
        examples = load_qa(args.file, args.split, limit, data_dir=args.data_dir, download=args.download)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for ex in examples:
        if args.json:
            print(json.dumps({"id": ex.id, "question": ex.question, "golden_answers": ex.golden_answers,
                              "metadata": ex.metadata}, ensure_ascii=False))
        else:
            print(f"[{ex.id}] {ex.question}\n    answers: {' | '.join(ex.golden_answers)}")
            if ex.metadata:
                print(f"    metadata: {json.dumps(ex.metadata, ensure_ascii=False)[:200]}")
    print(f"({len(examples)} shown)", file=sys.stderr)
    return 0
