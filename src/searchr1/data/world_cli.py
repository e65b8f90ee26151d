"""``searchr1 world --seed S --out DIR``: generate SearchWorld and write it to disk."""
from __future__ import annotations

import argparse
import json
import time

from searchr1.data.prompts import apply_chat_template, make_prompt
from searchr1.data.traces import pick_teacher_questions, teacher_response
from searchr1.data.world import RELATIONS, WorldConfig, generate_world
from searchr1.data.world_io import stats_markdown, write_world
from searchr1.search.bm25 import BM25Retriever


def bm25_retriever(documents):
    """The project's BM25 over ``documents`` (used for the stats' answer-in-top-k rate)."""
    return BM25Retriever.build(documents)


def write_teacher_sft(world, retriever, n: int, path: str, chat_tokenizer: str = "", topk: int = 3) -> int:
    """``n`` scripted-teacher trajectories (train split, single- and two-hop alternating) as SFT JSONL."""
    tok = None
    if chat_tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(chat_tokenizer)
    picked = pick_teacher_questions(list(world.splits["train"]), n, world.config.seed)
    with open(path, "w", encoding="utf-8") as f:
        for q in picked:
            prompt = make_prompt(q.question)
            prompt = apply_chat_template(tok, prompt) if tok is not None else prompt
            f.write(json.dumps({"id": q.id, "prompt": prompt, "response": teacher_response(q, retriever, topk)}) + "\n")
    return len(picked)


def register(subparsers) -> None:
    p = subparsers.add_parser("world", help="generate SearchWorld: a fictional corpus + QA splits only search can answer",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = WorldConfig()
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", required=True, help="output directory (corpus.jsonl, train/dev/test.jsonl, stats)")
    p.add_argument("--entities", type=int, default=d.people, help="number of people (the main subjects)")
    p.add_argument("--works", type=int, default=d.works)
    p.add_argument("--cities", type=int, default=d.cities)
    p.add_argument("--countries", type=int, default=d.countries)
    p.add_argument("--organisations", type=int, default=d.organisations)
    p.add_argument("--distractors", type=int, default=d.distractors_per_entity, help="distractor passages per subject")
    p.add_argument("--relations", default=",".join(RELATIONS), help="comma-separated question relations")
    p.add_argument("--dev-frac", type=float, default=d.dev_frac)
    p.add_argument("--test-frac", type=float, default=d.test_frac)
    p.add_argument("--heldout-frac", type=float, default=0.1, help="share of subjects held out entirely")
    p.add_argument("--no-retrieval-stats", action="store_true", help="skip the BM25 answer-in-top-k stats")
    p.add_argument("--teacher-sft", type=int, default=0, metavar="N",
                   help="also write teacher_sft.jsonl: N scripted-teacher trajectories from the train split "
                        "({prompt, response}; cold-start SFT data for `searchr1 train --recipe sft`)")
    p.add_argument("--sft-chat-tokenizer", default="",
                   help="tokenizer (name or dir) whose chat template wraps the SFT prompts (raw when empty)")
    p.set_defaults(func=run)


def run(args) -> int:
    t0 = time.perf_counter()
    cfg = WorldConfig(seed=args.seed, people=args.entities, works=args.works, cities=args.cities,
                      countries=args.countries, organisations=args.organisations,
                      distractors_per_entity=args.distractors,
                      relations=tuple(r.strip() for r in args.relations.split(",") if r.strip()),
                      dev_frac=args.dev_frac, test_frac=args.test_frac, heldout_frac=args.heldout_frac)
    world = generate_world(cfg)
    retriever = None if args.no_retrieval_stats else bm25_retriever(world.documents)
    stats = write_world(world, args.out, retriever)
    if args.teacher_sft:
        n = write_teacher_sft(world, retriever or bm25_retriever(world.documents), args.teacher_sft,
                              f"{args.out}/teacher_sft.jsonl", args.sft_chat_tokenizer)
        print(f"wrote {n} teacher trajectories to {args.out}/teacher_sft.jsonl")
    print(stats_markdown(stats))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f}s")
    return 0
