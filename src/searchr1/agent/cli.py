"""``searchr1 serve-agent``: the agent behind an OpenAI-compatible /v1/chat/completions."""
from __future__ import annotations

import argparse
import ipaddress
import logging

from searchr1.agent.service import AgentConfig, AgentRunner, create_agent_app
from searchr1.errors import UsageError
from searchr1.eval.setup import DEMO_INDEX, default_index, default_model, make_retriever
from searchr1.models.hf import load_causal_lm
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.config import RolloutConfig
from searchr1.search.base import TOKEN_ENV

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser("serve-agent", help="serve the agent: OpenAI-compatible POST /v1/chat/completions",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None, help="model dir or hub name (default: the newest checkpoint under runs/, "
                   "else smollm2-135m)")
    p.add_argument("--index", default=None, help="index directory (`searchr1 index`)")
    p.add_argument("--server", default=None, help="retrieval server URL (`searchr1 serve`)")
    p.add_argument("--retriever-token", default=None, help="token of the retrieval server (default: $" + TOKEN_ENV + ")")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' from clients")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--max-turns", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per turn")
    p.add_argument("--max-batch", type=int, default=8, help="questions per engine run (concurrent requests batch)")
    p.add_argument("--template", default="search-r1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use a TCP port in 1-65535.")
    index = default_index(args.index, args.server)
    if not (index or args.server):
        raise UsageError(f"serve-agent needs a retriever: --index DIR or --server URL (after `make demo`, "
                         f"{DEMO_INDEX} is used by default)")
    retriever, _ = make_retriever(index, args.server, args.retriever_token)
    name = args.model or default_model()
    model, tok = load_causal_lm(name, dtype=args.dtype, device=args.device)
    config = AgentConfig(model_name=name, template=args.template, max_batch=args.max_batch, token=args.token,
                         rollout=RolloutConfig(max_turns=args.max_turns, topk=args.topk, do_sample=False,
                                               max_turn_tokens=args.max_new_tokens, return_logprobs=False))
    if args.token is None and not _loopback(args.host):
        log.warning("serving on %s without --token: anyone who can reach it can use the agent", args.host)
    app = create_agent_app(AgentRunner(HFBackend(model, tok), tok, retriever, config), config)
    print(f"serving {name} on http://{args.host}:{args.port}/v1/chat/completions (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
