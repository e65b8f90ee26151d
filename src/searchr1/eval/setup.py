"""Building the pieces of an evaluation from command-line style options.

* ``make_retriever(index=..., server=..., backend=..., cache=...)``: an in-process index, a retrieval
  server or a web search API, optionally behind the persistent search cache;
* ``make_generator(model=..., openai_base=..., openai_model=...)``: a local model or an API;
* ``make_rollout_backend("vllm", bundle)``: a vLLM engine on the generator's checkpoint for the
  rollout-engine methods (``--backend vllm``);
* ``default_model(runs="runs")``: the newest trained checkpoint under ``runs/``, else the
  embedded SmolLM2 (what ``searchr1 ask`` uses when ``--model`` is not given).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from searchr1.errors import UsageError
from searchr1.rollout.backends.vllm import INSTALL_HINT, VLLMBackend, vllm_available
from searchr1.eval.manifest import index_protocol
from searchr1.search import cache as search_cache
from searchr1.search.cache import SearchCacheConfig
from searchr1.search import shards
from searchr1.search.guard import GuardedRetriever, startup_check
from searchr1.search.index import load_retriever, read_index_meta
from searchr1.search.web import WebConfig, WebSearchRetriever, parse_backend
from searchr1.models.smollm2 import SMOLLM2_NAMES, smollm2_dir


@dataclass
class GeneratorBundle:
    generator: object
    model: object | None       # local model (None for API models)
    tokenizer: object | None
    info: dict                 # manifest "model" entry


def make_retriever(index: str | None = None, server: str | None = None, token: str | None = None,
                   failure_policy: str = "abort", max_consecutive_failures: int = 10, *,
                   backend: str | None = None, web: WebConfig | None = None,
                   cache: SearchCacheConfig | None = None):
    """(retriever, manifest entry). Exactly one of ``index`` / ``server`` / ``backend`` (a web search API,
    ``web:serper`` ...); none gives (None, None).

    A server is probed first (``/health`` and one test search with ``token``, default ``$SEARCHR1_TOKEN``):
    a dead server or a refused token fails at once. ``cache`` puts the persistent search cache
    (``search.cache``: rw, record or replay) in front of the retriever. The result is wrapped in the
    failure policy (``search.guard``): ``abort`` stops the run after ``max_consecutive_failures`` failed
    searches in a row; ``record`` only counts them (the report and a re-run still see every failed search).
    """
    if sum(bool(x) for x in (index, server, backend)) > 1:
        raise UsageError("pass one retriever: --index DIR, --server URL or --search-backend web:NAME.")
    if index:
        if not Path(index).is_dir():
            raise FileNotFoundError(f"index directory {index!r} does not exist; build it with `searchr1 index`.")
        retriever, info = load_retriever(index), index_protocol(index)
        ident = search_cache.identity(retriever, read_index_meta(index))
    elif backend:
        web = WebConfig(**{**(web or WebConfig()).__dict__, "provider": parse_backend(backend)})
        retriever = WebSearchRetriever(web)
        ident = retriever.cache_identity()
        info = {"kind": retriever.kind, "num_passages": None, "corpus_sha256": None,
                "settings": {"params": web.params}, "location": {"url": retriever.url}}
    elif server:
        # None: the client reads $SEARCHR1_TOKEN; URL1,URL2,...: corpus shards merged into one top-k
        retriever = shards.connect(server, token=token or None)
        startup_check(retriever)   # fail early, with the URL, when the server is down or refuses the token
        health = retriever.health()
        # /health names the retriever and corpus size; a corpus checksum is recorded when the
        # server reports one (`corpus_sha256`), else the manifest says it is unknown (None)
        info = {"kind": health.get("retriever", "server"), "num_passages": health.get("corpus_size"),
                "corpus_sha256": health.get("corpus_sha256"), "location": {"url": server}}
        ident = (f"server:{info['kind']}", info["corpus_sha256"]) if info["corpus_sha256"] else \
            search_cache.identity(retriever)
    else:
        return None, None
    retriever = search_cache.wrap(retriever, cache, *ident)
    if cache is not None and cache.mode != "off":  # recorded where paths go: never compared, replay == live
        info["location"] = {**info.get("location", {}), "search_cache": {"path": cache.path, "mode": cache.mode}}
    return GuardedRetriever(retriever, failure_policy, max_consecutive_failures), info


DEMO_INDEX = Path("runs/demo/world/index")
"""The index `make demo` leaves behind: `searchr1 ask` and `serve-agent` use it when neither --index nor
--server is given."""


def default_index(index: str | None, server: str | None) -> str | None:
    """``index``, or the demo's index when no retriever was named and the demo has run here."""
    if index or server or not (DEMO_INDEX / "index.json").is_file():
        return index
    return str(DEMO_INDEX)


def checkpoint_candidates(runs: str | Path = "runs") -> list[Path]:
    """Model directories under ``runs/`` (config.json + tokenizer), newest first. A
    ``checkpoints/step_*`` directory counts only once its ``COMPLETE`` marker exists."""
    root = Path(runs)
    if not root.is_dir():
        return []
    found = []
    for cfg in root.rglob("config.json"):
        d = cfg.parent
        if not any((d / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            continue
        step = next((p for p in (d, d.parent) if p.name.startswith("step_")), None)
        if step is not None and not (step / "COMPLETE").is_file():
            continue
        found.append(d)
    return sorted(found, key=lambda d: (d / "config.json").stat().st_mtime, reverse=True)


def default_model(runs: str | Path = "runs") -> str:
    found = checkpoint_candidates(runs)
    return str(found[0]) if found else SMOLLM2_NAMES[0]


def make_generator(model: str | None = None, openai_base: str | None = None, openai_model: str | None = None,
                   api_key: str | None = None, device: str = "cpu", dtype: str = "auto",
                   revision: str | None = None, batch_size: int = 8) -> GeneratorBundle:
    if openai_base or openai_model:
        if model:
            raise ValueError("pass either --model or --openai-base/--openai-model, not both.")
        if not (openai_base and openai_model):
            raise ValueError("an OpenAI-compatible endpoint needs both --openai-base URL and --openai-model NAME.")
        from searchr1.rollout.backends.openai import OpenAIChatBackend

        gen = OpenAIChatBackend(openai_base, openai_model, api_key or os.environ.get("OPENAI_API_KEY"),
                                max_concurrency=batch_size)
        return GeneratorBundle(gen, None, None, {"name": openai_model, "revision": revision, "kind": "openai-chat",
                                                 "location": {"endpoint": openai_base}})
    from searchr1.models.generate import HFGenerator
    from searchr1.models.hf import load_causal_lm, model_fingerprint

    name = model or default_model()
    m, tok = load_causal_lm(name, dtype=dtype, device=device, revision=revision)
    info = {**model_fingerprint(m, name, revision), "kind": "hf", "dtype": str(next(m.parameters()).dtype)}
    return GeneratorBundle(HFGenerator(m, tok, name=name, batch_size=batch_size), m, tok, info)


BACKENDS = ("hf", "vllm")
ENGINE_METHODS = ("search-r1", "search-o1")
"""Methods that run the rollout engine, and so can run on ``--backend vllm`` (the others call the generator)."""


def check_backend(kind: str, methods: tuple[str, ...] = ENGINE_METHODS, api: bool = False) -> None:
    """Reject a ``--backend`` that cannot run these methods, before anything loads (UsageError)."""
    if kind not in BACKENDS:
        raise UsageError(f"--backend {kind}: use one of {', '.join(BACKENDS)}")
    if kind == "hf":
        return
    if api:
        raise UsageError("--backend vllm runs a local checkpoint (--model), not an OpenAI-compatible endpoint")
    others = [m for m in methods if m not in ENGINE_METHODS]
    if others:
        raise UsageError(f"--backend vllm runs the rollout-engine methods ({', '.join(ENGINE_METHODS)}); "
                         f"the others ({', '.join(others)}) call the generator: drop them from --methods or use --backend hf")
    if not vllm_available():
        raise UsageError(f"--backend vllm, but vLLM is not installed here: {INSTALL_HINT}")


def make_rollout_backend(kind: str, bundle: GeneratorBundle, methods: tuple[str, ...] = ENGINE_METHODS):
    """None for ``hf`` (the engine methods build HFBackend on ``bundle.model``); for ``vllm`` one in-process
    vLLM engine on the same checkpoint in the same dtype, recorded in ``bundle.info["rollout_backend"]``."""
    check_backend(kind, methods, api=bundle.model is None)
    if kind == "hf":
        return None
    path = bundle.info["name"]
    if path in SMOLLM2_NAMES:
        path = str(smollm2_dir())
    dtype = bundle.info["dtype"].removeprefix("torch.")
    bundle.info["rollout_backend"] = "vllm"
    return VLLMBackend(path, dtype=dtype)
