"""Policy loading for training: any HF causal LM, optional LoRA, gradient checkpointing,
weight reloading for resume, and the final export (merged for LoRA) that plain
transformers / vLLM load."""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import torch

from searchr1.errors import SearchR1Error
from searchr1.models.hf import _register_local_architectures, load_causal_lm
from searchr1.models.smollm2 import SMOLLM2_NAMES
from searchr1.rl.checkpoint import CheckpointError
from searchr1.rl.config import DataConfig, ModelConfig
from searchr1.search.server import TOKEN_ENV

HUB_PROBE_TIMEOUT_S = 2.0
_TRUE = ("1", "ON", "YES", "TRUE")


class ModelUnavailable(SearchR1Error, OSError):
    """``model.path`` names a hub model this machine cannot get (offline, not cached)."""


def load_policy(cfg: ModelConfig, device: torch.device):
    """(model, tokenizer) from ``cfg.path`` (a hub name or a save_pretrained directory).

    Local directories may hold searchr1's own architectures (the demo's copy model); a hub name
    that is not cached fails at once when the hub is off (``HF_HUB_OFFLINE=1``) or unreachable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not cfg.path:
        raise ValueError("model.path is empty; set it to a Hugging Face model name or a local model directory")
    if cfg.path in SMOLLM2_NAMES:  # the SmolLM2-135M-Instruct embedded in the install (no network)
        model, tok = load_causal_lm(cfg.path, dtype=cfg.dtype, device=str(device))
        tok.padding_side = "right"
        return model, tok
    for name, field, probe in ((cfg.path, "model.path", "config.json"),
                               (cfg.tokenizer, "model.tokenizer", "tokenizer_config.json")):
        if name and _local_dir(name, field) is None:
            require_hub_model(name, field, probe)
    local = _local_dir(cfg.path, "model.path")
    if local is not None:
        _register_local_architectures(local)
    try:
        tok = AutoTokenizer.from_pretrained(cfg.tokenizer or cfg.path, trust_remote_code=cfg.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(cfg.path, dtype=getattr(torch, cfg.dtype),
                                                     trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        raise OSError(f"could not load model.path={cfg.path!r}: {e}. Pass a directory written by save_pretrained "
                      "or a hub name reachable from this machine") from e
    if tok.pad_token_id is None:
        if tok.eos_token_id is None:
            raise ValueError(f"the tokenizer of {cfg.path} has neither a pad nor an EOS token; add a pad token")
        tok.pad_token = tok.eos_token
    return model.to(device), tok


def _local_dir(name: str, field: str) -> Path | None:
    """The model directory ``name`` names, None for a hub id; a local-looking path that is not a
    model directory is an error."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and field == "model.path":
            raise FileNotFoundError(f"{field}={name!r} is a directory without config.json; pass a directory "
                                    "written by save_pretrained (e.g. <output_dir>/final)")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{field}={name!r}: no such model directory; pass a directory written by "
                                "save_pretrained, a Hugging Face hub id, or 'smollm2-135m'")
    return None


def hub_offline() -> bool:
    return any(os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def require_hub_model(name: str, field: str = "model.path", probe_file: str = "config.json") -> None:
    """Return when hub id ``name`` is in the local cache or the hub answers within 2 s; else raise
    :class:`ModelUnavailable` at once (instead of transformers' retries)."""
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        if isinstance(try_to_load_from_cache(name, probe_file), str):
            return
    except ValueError as e:  # huggingface_hub's HFValidationError: not a valid repo id
        raise ValueError(f"{field}={name!r} is neither a local directory nor a valid hub id ({e})") from e
    if hub_offline():
        reason = "HF_HUB_OFFLINE=1 is set"
    else:
        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"),
                                   timeout=HUB_PROBE_TIMEOUT_S).close()
            return
        except urllib.error.HTTPError:
            return                      # the hub answered (with an HTTP status): it is reachable
        except OSError as e:            # DNS failure, refused, timeout
            reason = f"the hub ({constants.ENDPOINT}) is unreachable ({e})"
    raise ModelUnavailable(f"{field}={name!r} is not a local directory nor in the Hugging Face cache, and "
                           f"{reason}; pass a directory written by save_pretrained, 'smollm2-135m' (embedded), "
                           "or download the model on a machine with network access first")


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


def build_retriever(cfg: DataConfig):
    """The retriever the rollout calls: the HTTP client of a running server, or an index in-process."""
    if cfg.retriever_url:
        from searchr1.search.client import HTTPSearchClient

        token = cfg.retriever_token or os.environ.get(TOKEN_ENV) or None
        return HTTPSearchClient(cfg.retriever_url, token=token)
    if cfg.index_dir:
        from searchr1.search.index import load_retriever

        return load_retriever(cfg.index_dir)
    raise ValueError("no retriever: set data.retriever_url (a `searchr1 serve` URL) or data.index_dir "
                     "(a directory written by `searchr1 index`), or rollout.search_enabled=false")
