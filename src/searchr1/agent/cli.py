"""``searchr1 serve-agent``: the agent behind an OpenAI-compatible /v1/chat/completions and a web page at /.

Backends (``--backend``): ``hf`` runs a local model with transformers (CPU or GPU); ``vllm`` runs it with
vLLM (GPU, ``pip install 'searchr1[gpu]'``); ``openai`` sends each turn to an upstream OpenAI-compatible
model server (``--upstream URL``, ``--model`` its model name) while this service runs the search loop.
"""
from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os

from transformers import AutoTokenizer

from searchr1.agent.service import AgentConfig, AgentRunner, create_agent_app
from searchr1.errors import UsageError
from searchr1.eval.setup import DEMO_INDEX, default_index, default_model, make_retriever
from searchr1.models.hf import load_causal_lm, prepare_tokenizer
from searchr1.models.smollm2 import SMOLLM2_NAMES, smollm2_dir
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.backends.openai import ByteTokenizer, ChatBackend, OpenAIChatBackend
from searchr1.rollout.backends.vllm import VLLMBackend
from searchr1.rollout.config import RolloutConfig
from searchr1.search.base import TOKEN_ENV

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "openai")
UNBOUNDED = 1 << 30   # the openai backend counts bytes, not model tokens: no prompt/observation budgets


def register(subparsers) -> None:
    p = subparsers.add_parser("serve-agent", help="serve the agent: OpenAI-compatible POST /v1/chat/completions",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", default="hf", choices=BACKENDS, help="what generates the agent's text (see above)")
    p.add_argument("--model", default=None, help="model dir or hub name (default: the newest checkpoint under runs/, "
                   "else smollm2-135m); with --backend openai: the upstream's model name")
    p.add_argument("--upstream", default=None, help="--backend openai: base URL of the OpenAI-compatible model "
                   "server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--upstream-key", default=None, help="--backend openai: API key of the upstream "
                   "(default: $OPENAI_API_KEY)")
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
    p.add_argument("--device", default="cpu", help="--backend hf: torch device")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5, help="--backend vllm: share of GPU memory")
    p.set_defaults(func=run)


def run(args) -> int:
    import uvicorn

    app, name = build_app(args)
    if args.token is None and not _loopback(args.host):
        log.warning("serving on %s without --token: anyone who can reach it can use the agent", args.host)
    print(f"serving {name} on http://{args.host}:{args.port}/ (page) and /v1/chat/completions (Ctrl-C to stop)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def build_app(args):
    """(the FastAPI app, the model name it reports) for parsed ``serve-agent`` arguments."""
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is out of range; use a TCP port in 1-65535.")
    if args.backend != "openai" and (args.upstream or args.upstream_key):
        raise UsageError("--upstream and --upstream-key are for --backend openai; drop them or add --backend openai.")
    if args.backend == "openai" and not (args.upstream and args.model):
        raise UsageError("--backend openai needs --upstream URL (the model server's /v1 base URL) and --model NAME "
                         "(its model name).")
    index = default_index(args.index, args.server)
    if not (index or args.server):
        raise UsageError(f"serve-agent needs a retriever: --index DIR or --server URL (after `make demo`, "
                         f"{DEMO_INDEX} is used by default)")
    retriever, _ = make_retriever(index, args.server, args.retriever_token)   # a bad index fails before a model loads
    make_backend = {"hf": _hf_backend, "vllm": _vllm_backend, "openai": _openai_backend}[args.backend]
    backend, tok, name, budgets = make_backend(args)
    config = AgentConfig(model_name=name, template=args.template, max_batch=args.max_batch, token=args.token,
                         rollout=RolloutConfig(max_turns=args.max_turns, topk=args.topk, do_sample=False,
                                               max_turn_tokens=args.max_new_tokens, return_logprobs=False, **budgets))
    return create_agent_app(AgentRunner(backend, tok, retriever, config), config), name


def _hf_backend(args):
    name = args.model or default_model()
    model, tok = load_causal_lm(name, dtype=args.dtype, device=args.device)
    return HFBackend(model, tok), tok, name, {}


def _vllm_backend(args):
    if importlib.util.find_spec("vllm") is None:
        raise UsageError("--backend vllm needs vLLM and a CUDA GPU, and vllm is not installed: "
                         "pip install 'searchr1[gpu]', or use --backend hf.")
    name = args.model or default_model()
    path = str(smollm2_dir()) if name in SMOLLM2_NAMES else name
    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    return VLLMBackend(path, dtype=args.dtype, gpu_memory_utilization=args.gpu_memory_utilization), tok, name, {}


def _openai_backend(args):
    generator = OpenAIChatBackend(args.upstream, args.model, args.upstream_key or os.environ.get("OPENAI_API_KEY"),
                                  max_concurrency=args.max_batch)
    tok = ByteTokenizer()
    budgets = {"max_prompt_tokens": UNBOUNDED, "max_obs_tokens": UNBOUNDED, "max_total_tokens": 2 * UNBOUNDED}
    return ChatBackend(generator, tok), tok, args.model, budgets



def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
