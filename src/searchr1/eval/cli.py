"""``searchr1 eval`` (the comparison table, ``--compare``) and ``searchr1 ask`` (one question, live)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from searchr1.data.load import load_qa
from searchr1.eval.ask import LivePrinter, ask, ask_agent, print_json
from searchr1.eval.manifest import compare_manifests, coverage, dataset_protocol, load_manifest
from searchr1.eval.runner import EvalConfig, evaluate
from searchr1.errors import UsageError
from searchr1.eval.setup import (BACKENDS, DEMO_INDEX, check_backend, default_index, make_generator, make_retriever,
                                 make_rollout_backend)
from searchr1.eval.types import EvalContext
from searchr1.eval.wiki_qa import write_wiki_qa
from searchr1.models.generate import Decoding
from searchr1.search.cli import add_cache_args, cache_config

SPLITS = ("train", "dev", "test", "heldout", "validation")


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate methods (direct, cot, rag, ircot, search-o1, search-r1, r1) "
                              "on QA sets; or --compare two results' protocols",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", nargs="+", help="QA sets: FlashRAG JSONL, Search-R1 parquet, a directory "
                   "(SearchWorld: DIR with test.jsonl) or a data set name (nq, hotpotqa, ...)")
    p.add_argument("--split", default=None, help="split for names and directories (default: the paper's)")
    p.add_argument("--limit", type=int, default=None, help="first N questions per data set")
    p.add_argument("--methods", default="direct,cot,rag,ircot,search-o1,search-r1",
                   help="comma-separated: direct,cot,rag,ircot,search-o1,search-r1,r1")
    p.add_argument("--out", default=None, help="output directory (results.md/json/png, manifest.json, "
                   "predictions.jsonl); re-running resumes")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="compare the protocols of two results; exit 1 when they differ")
    _add_model_args(p)
    _add_retriever_args(p)
    p.add_argument("--template", default="search-r1", help="prompt template of search-r1 (a name, or a raw "
                   "template with {question}); recorded in the manifest")
    p.add_argument("--chat-template", choices=("auto", "none"), default="auto",
                   help="search-r1: wrap the prompt in the tokenizer's chat template (auto, as Search-R1 does) "
                        "or send it raw (none)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="token budget of one generation call (turn) for every method (default: per method, "
                        "direct/rag 32, ircot 64, cot/r1/search-o1 128, search-r1 256)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-turns", type=int, default=4, help="turns of search-o1 / search-r1")
    p.add_argument("--ircot-steps", type=int, default=4, help="IRCoT reasoning sentences before the forced answer")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=run_eval)

    a = subparsers.add_parser("ask", help="answer one question with search, printing the trajectory live",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a.add_argument("question")
    _add_model_args(a)
    _add_retriever_args(a)
    a.add_argument("--max-new-tokens", type=int, default=256)
    a.add_argument("--max-turns", type=int, default=4)
    a.add_argument("--template", default="search-r1", help="prompt template (search-r1, or a raw "
                   "template with {question})")
    a.add_argument("--json", action="store_true", help="print one JSON object instead of the live view")
    a.add_argument("--server-agent", default=None, metavar="URL",
                   help="ask a running `searchr1 serve-agent` (e.g. http://127.0.0.1:8100) instead of loading a model")
    a.add_argument("--agent-token", default=None, help="bearer token of that agent service")
    a.set_defaults(func=run_ask)

    w = subparsers.add_parser("wiki-qa", help="build a small real-Wikipedia QA set (definition -> title) "
                              "from the wiki summaries corpus", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    w.add_argument("--out", required=True, help="FlashRAG JSONL to write")
    w.add_argument("--n", type=int, default=100, help="questions")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--words-per-passage", type=int, default=100, help="as the corpus' (`searchr1 corpus wiki`)")
    w.set_defaults(func=run_wiki_qa)


def _add_model_args(p) -> None:
    p.add_argument("--model", default=None, help="HF path or hub name, or smollm2-135m (default: the newest "
                   "checkpoint under runs/, else smollm2-135m)")
    p.add_argument("--revision", default=None, help="hub revision of --model")
    p.add_argument("--openai-base", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")
    p.add_argument("--openai-model", default=None, help="model name at --openai-base")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--backend", default="hf", choices=BACKENDS,
                   help="what decodes the rollout-engine methods (search-r1, search-o1, ask): hf (the project's "
                        "loop) or vllm (a vLLM engine on the same checkpoint; `make install-vllm` on CPU)")


def _add_retriever_args(p) -> None:
    p.add_argument("--index", default=None, help="index directory built by `searchr1 index`")
    p.add_argument("--server", default=None, help="retrieval server URL (`searchr1 serve`)")
    p.add_argument("--topk", type=int, default=3, help="passages per search")
    p.add_argument("--token", default=None, help="bearer token of a server started with `searchr1 serve --token` "
                   "(default: $SEARCHR1_TOKEN)")
    p.add_argument("--search-failures", choices=("abort", "record"), default="abort",
                   help="abort: stop after 10 failed searches in a row (a re-run retries the affected "
                        "predictions); record: only count them")
    p.add_argument("--search-backend", default=None, metavar="web:NAME",
                   help="search the web instead of --index/--server: web:serper, web:serpapi, web:brave, web:searxng "
                        "(keys and URLs from the environment, see docs/retrieval.md)")
    add_cache_args(p)


def dataset_name(source: str, split: str | None) -> str:
    """``nq``, ``world-test`` (for world/test.jsonl or world/ + split test), ``myset``..."""
    p = Path(source)
    if p.suffix in (".jsonl", ".json", ".parquet"):
        return f"{p.parent.name}-{p.stem}" if p.stem in SPLITS and p.parent.name else p.stem
    if p.is_dir():
        return f"{p.name}-{split or 'test'}"
    return source if not split else f"{source}-{split}"


def run_eval(args) -> int:
    console = Console(stderr=True)
    if args.compare:
        return run_compare(*args.compare)
    if not args.data or not args.out:
        console.print("[red]searchr1 eval needs --data and --out (or --compare A.json B.json).[/]")
        return 2
    config = EvalConfig(methods=[m.strip() for m in args.methods.split(",") if m.strip()], batch_size=args.batch_size,
                        max_new_tokens=args.max_new_tokens,
                        method_options={"search-r1": {"template": args.template,
                                                      "chat_template": args.chat_template == "auto"}})
    check_backend(args.backend, tuple(config.methods), api=bool(args.openai_base or args.openai_model))
    datasets, infos = {}, []
    for src in args.data:
        split = args.split or ("test" if Path(src).is_dir() else None)
        examples = load_qa(src, split=split, limit=args.limit)
        name = dataset_name(src, split)
        if name in datasets:
            console.print(f"[red]two data sets are both named {name!r}; give distinct files.[/]")
            return 2
        datasets[name] = examples
        infos.append(dataset_protocol(name, examples, src, args.limit))
    retriever, retriever_info = make_retriever(args.index, args.server, args.token, args.search_failures,
                                               backend=args.search_backend, cache=cache_config(args))
    bundle = make_generator(args.model, args.openai_base, args.openai_model, device=args.device,
                            dtype=args.dtype, revision=args.revision, batch_size=args.batch_size)
    rollout_backend = make_rollout_backend(args.backend, bundle, tuple(config.methods))
    ctx = EvalContext(generator=bundle.generator, retriever=retriever, topk=args.topk,
                      decoding=Decoding(temperature=args.temperature,
                                        seed=args.seed),
                      max_turns=args.max_turns, ircot_steps=args.ircot_steps,
                      model=bundle.model, tokenizer=bundle.tokenizer, rollout_backend=rollout_backend)

    def progress(p):
        console.print(f"[dim]{p.line()}[/dim]")

    evaluate(datasets, ctx, config, args.out, bundle.info, retriever_info, infos, progress=progress)
    print((Path(args.out) / "results.md").read_text())
    console.print(f"wrote {args.out}/results.md, results.json, results.png, manifest.json")
    return 0


def run_compare(a: str, b: str) -> int:
    ma, mb = load_manifest(a), load_manifest(b)
    diffs = compare_manifests(ma, mb)
    for section, cov in coverage(ma, mb).items():
        if cov["only_a"] or cov["only_b"]:
            print(f"{section}: only in A: {', '.join(cov['only_a']) or '-'}; only in B: {', '.join(cov['only_b']) or '-'}")
    if not diffs:
        print("protocols match: the results are comparable")
        return 0
    print(f"protocols differ in {len(diffs)} field(s):")
    for key, va, vb in diffs:
        print(f"  {key}:\n    A: {json.dumps(va, ensure_ascii=False)}\n    B: {json.dumps(vb, ensure_ascii=False)}")
    return 1


def run_ask(args) -> int:
    console = Console(stderr=args.json)
    if args.server_agent:
        result = ask_agent(args.server_agent, args.question, args.agent_token,
                           live=None if args.json else LivePrinter(console))
        if args.json:
            print_json(result)
        elif result["answer"] is None:
            console.print(f"[yellow]no answer[/] ({result['finish_reason']})")
        return 0
    check_backend(args.backend, api=bool(args.openai_base or args.openai_model))
    index = default_index(args.index, args.server or args.search_backend)
    retriever, _ = make_retriever(index, args.server, args.token, args.search_failures,
                                  backend=args.search_backend, cache=cache_config(args))
    if retriever is None:
        raise UsageError("searchr1 ask needs a retriever: --index DIR or --server URL, or --search-backend web:NAME "
                         "(after `make demo`, "
                         f"{DEMO_INDEX} is used by default)")
    if index and not args.index:
        console.print(f"[dim]index: {index} (the demo's)[/dim]")
    bundle = make_generator(args.model, args.openai_base, args.openai_model, device=args.device,
                            dtype=args.dtype, revision=args.revision, batch_size=1)
    rollout_backend = make_rollout_backend(args.backend, bundle)
    if not args.json:
        console.print(f"[dim]model: {bundle.info.get('name')}[/dim]")
    ctx = EvalContext(generator=bundle.generator, retriever=retriever, topk=args.topk,
                      decoding=Decoding(max_new_tokens=args.max_new_tokens), max_turns=args.max_turns,
                      model=bundle.model, tokenizer=bundle.tokenizer, rollout_backend=rollout_backend)
    result = ask(args.question, ctx, live=None if args.json else LivePrinter(console), template=args.template)
    if args.json:
        print_json(result)
    elif result["answer"] is None:
        console.print(f"[yellow]no answer[/] ({result['finish_reason']})")
    return 0


def run_wiki_qa(args) -> int:
    n = write_wiki_qa(args.out, n=args.n, seed=args.seed, words_per_passage=args.words_per_passage)
    print(f"wrote {n} questions to {args.out}")
    return 0
