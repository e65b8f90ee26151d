"""Load any Hugging Face causal LM (local path or hub name) with its tokenizer.

``load_causal_lm("smollm2-135m")`` resolves to the embedded SmolLM2 (see ``smollm2.py``);
anything else goes to ``transformers.AutoModelForCausalLM.from_pretrained``. The model
is returned in eval mode; the tokenizer always has a pad token (the EOS token when the
checkpoint defines none) and pads on the left, as batched generation needs.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from searchr1.errors import SearchR1Error
from searchr1.models.copy_lm import MODEL_TYPE, register_copy_lm
from searchr1.models.smollm2 import SMOLLM2_NAMES, smollm2_dir

_DTYPES = ("auto", "float32", "bfloat16", "float16")
HUB_PROBE_TIMEOUT_S = 2.0
_TRUE = ("1", "ON", "YES", "TRUE")


def resolve_dtype(dtype: str, device: str):
    """``"auto"`` -> bfloat16 on CUDA, float32 elsewhere; otherwise the named torch dtype."""
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}.")
    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def prepare_tokenizer(tokenizer):
    """Left padding and a pad token (the EOS token when the checkpoint has none)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has neither a pad nor an EOS token; set one with "
                "tokenizer.add_special_tokens({'pad_token': ...}) before evaluation."
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


class ModelUnavailable(SearchR1Error, OSError):
    """A hub model this machine cannot get (offline, or the hub unreachable, and not cached)."""


def hub_offline() -> bool:
    return any(os.environ.get(v, "").upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def require_hub_model(name: str, field: str = "model", probe_file: str = "config.json") -> None:
    """Return when hub id ``name`` is in the local cache or the hub answers within 2 s; else raise
    :class:`ModelUnavailable` at once (instead of transformers' retries). ``field`` names the option."""
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


def local_model_dir(name: str, field: str = "model") -> Path | None:
    """The model directory ``name`` names, None for a hub id; a local-looking path that is not a model
    directory is an error naming ``field``."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{field}={name!r} is a directory without config.json; pass a directory "
                                    "written by save_pretrained (e.g. <output_dir>/final)")
        return path
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"{field}={name!r}: no such model directory; pass a directory written by "
                                "save_pretrained, a Hugging Face hub id, or 'smollm2-135m'")
    return None


def load_causal_lm(
    name_or_path: str | Path,
    dtype: str = "auto",
    device: str = "cpu",
    revision: str | None = None,
    *,
    tokenizer: str | None = None,
    trust_remote_code: bool = False,
    field: str = "model",
):
    """(model, tokenizer) for a local checkpoint directory, a hub name, or ``"smollm2-135m"``.

    ``revision`` pins a hub commit/tag; ``tokenizer`` loads the tokenizer from elsewhere. A local
    directory may hold searchr1's own architectures (the demo's copy model); a hub name that is not
    cached fails at once when the hub is off or unreachable. Errors name ``field`` and say what to pass.
    The model is in eval mode; the tokenizer has a pad token and pads on the left.
    """
    name = str(name_or_path)
    if name in SMOLLM2_NAMES:
        name = str(smollm2_dir())
    torch_dtype = resolve_dtype(dtype, device)
    for src, what, probe in ((name, field, "config.json"), (tokenizer, f"{field} tokenizer", "tokenizer_config.json")):
        if src and local_model_dir(src, what) is None:
            require_hub_model(src, what, probe)
    local = local_model_dir(name, field)
    if local is not None:
        _register_local_architectures(local)
    src = str(local) if local is not None else name
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer or src, revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(src, revision=revision, dtype=torch_dtype,
                                                     trust_remote_code=trust_remote_code)
    except OSError as e:
        raise OSError(
            f"could not load {field}={name!r}: {e}. Pass a directory written by save_pretrained, or a hub "
            "name reachable from this machine (HF_HUB_OFFLINE=1 only allows models already in the cache)."
        ) from e
    model.to(device)
    model.eval()
    return model, prepare_tokenizer(tok)


def _register_local_architectures(path: Path) -> None:
    """Register searchr1's own architectures (the demo's copy model) when ``path`` holds one."""
    if json.loads((path / "config.json").read_text()).get("model_type") == MODEL_TYPE:
        register_copy_lm()


def model_fingerprint(model, name_or_path: str, revision: str | None = None) -> dict:
    """What identifies a model in a protocol manifest: name, revision, and a weight hash.

    The hash covers the first and last parameter tensors and the parameter count (cheap,
    and it changes with any training step that touches the embeddings or the head).
    """
    params = list(model.state_dict().items())
    h = hashlib.sha256()
    h.update(str(sum(p.numel() for _, p in params)).encode())
    for key, tensor in (params[0], params[-1]) if params else ():
        h.update(key.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    commit = getattr(model.config, "_commit_hash", None)
    return {
        "name": str(name_or_path),
        "revision": revision or commit,
        "weights_sha256": h.hexdigest()[:16],
        "architecture": type(model).__name__,
    }


def smollm2(dtype: str = "auto", device: str = "cpu"):
    """(model, tokenizer) of SmolLM2-135M-Instruct from the local package (no network)."""
    return load_causal_lm(smollm2_dir(), dtype=dtype, device=device)
