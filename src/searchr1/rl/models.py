"""Policy loading for training: any HF causal LM, optional LoRA, gradient checkpointing,
weight reloading for resume, and the final export (merged for LoRA) that plain
transformers / vLLM load."""
from __future__ import annotations

from pathlib import Path

import torch

from searchr1.models.hf import load_causal_lm
from searchr1.rl.checkpoint import CheckpointError
from searchr1.rl.config import DataConfig, ModelConfig, SearchConfig
from searchr1.search import cache as search_cache
from searchr1.search import shards
from searchr1.search.index import load_retriever, read_index_meta
from searchr1.search.web import WebConfig, WebSearchRetriever, parse_backend


def load_policy(cfg: ModelConfig, device: torch.device):
    """(model, tokenizer) from ``cfg.path`` (a hub name, a save_pretrained directory or the embedded
    ``smollm2-135m``) through the project's one loader; the tokenizer pads on the right (training layout)."""
    if not cfg.path:
        raise ValueError("model.path is empty; set it to a Hugging Face model name or a local model directory")
    model, tok = load_causal_lm(cfg.path, dtype=cfg.dtype, device=str(device), tokenizer=cfg.tokenizer,
                                trust_remote_code=cfg.trust_remote_code, field="model.path")
    tok.padding_side = "right"
    return model, tok


def wrap_policy(model, cfg: ModelConfig):
    """LoRA (peft) when ``lora_rank > 0``; gradient checkpointing when asked."""
    if cfg.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{type(model).__name__} does not support gradient checkpointing; "
                             "set model.gradient_checkpointing=false")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
    if cfg.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        targets = cfg.lora_target_modules
        targets = targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
        lcfg = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, task_type="CAUSAL_LM")
        model = get_peft_model(model, lcfg)
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


def _read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {directory}; not a checkpoint written by save_pretrained")
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            sd.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f} is unreadable ({type(e).__name__}: {e})") from e
    return sd


@torch.no_grad()
def load_weights(model, directory: str | Path, lora: bool = False) -> None:
    """Load saved weights into ``model`` in place (exact values; tied weights re-tied)."""
    directory = Path(directory)
    if lora:
        from peft import set_peft_model_state_dict

        sd = _read_safetensors(directory)
        res = set_peft_model_state_dict(model, sd)
        if getattr(res, "unexpected_keys", None):
            raise ValueError(f"adapter in {directory} does not match the model: {res.unexpected_keys[:5]}")
        return
    sd = _read_safetensors(directory)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected:
        raise ValueError(f"{directory} holds weights the model lacks: {unexpected[:5]}; wrong model.path?")
    loaded = {p.data_ptr() for k, p in model.state_dict().items() if k in sd}
    really_missing = [k for k in missing if model.state_dict()[k].data_ptr() not in loaded]
    if really_missing:
        raise ValueError(f"{directory} lacks weights {really_missing[:5]}; the checkpoint is incomplete")


def save_final(model, tokenizer, directory: str | Path, lora: bool = False) -> Path:
    """Write a plain causal-LM directory (LoRA merged into the base weights)."""
    directory = Path(directory)
    if lora:
        import copy

        merged = copy.deepcopy(model).merge_and_unload()
        merged.save_pretrained(directory, safe_serialization=True)
    else:
        model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def build_retriever(cfg: DataConfig, search: SearchConfig | None = None):
    """The retriever the rollout calls: the HTTP client of a running server, an index in-process, or a
    web search API (``search.backend``), behind the persistent search cache when ``search.cache`` asks."""
    search = search or SearchConfig()
    if search.backend:
        web = WebSearchRetriever(WebConfig(**{**search.web.__dict__, "provider": parse_backend(search.backend)}))
        return search_cache.wrap(web, search.cache, *web.cache_identity())
    if cfg.retriever_url:
        # "" = unset: the client then reads $SEARCHR1_TOKEN itself
        client = shards.connect(cfg.retriever_url, token=cfg.retriever_token or None)   # URL or URL1,URL2,...
        return search_cache.wrap(client, search.cache, *search_cache.identity(client))
    if cfg.index_dir:
        retriever = load_retriever(cfg.index_dir)
        ident = search_cache.identity(retriever, read_index_meta(cfg.index_dir))
        return search_cache.wrap(retriever, search.cache, *ident)
    raise ValueError("no retriever: set data.retriever_url (a `searchr1 serve` URL) or data.index_dir "
                     "(a directory written by `searchr1 index`), or rollout.search_enabled=false")
