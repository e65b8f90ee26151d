"""Load any Hugging Face causal LM (local path or hub name) with its tokenizer.

``load_causal_lm("smollm2-135m")`` resolves to the embedded SmolLM2 (see ``smollm2.py``);
anything else goes to ``transformers.AutoModelForCausalLM.from_pretrained``. The model
is returned in eval mode; the tokenizer always has a pad token (the EOS token when the
checkpoint defines none) and pads on the left, as batched generation needs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from searchr1.models.copy_lm import MODEL_TYPE, register_copy_lm
from searchr1.models.smollm2 import SMOLLM2_NAMES, smollm2_dir

_DTYPES = ("auto", "float32", "bfloat16", "float16")


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


def load_causal_lm(
    name_or_path: str | Path,
    dtype: str = "auto",
    device: str = "cpu",
    revision: str | None = None,
):
    """(model, tokenizer) for a local checkpoint directory, a hub name, or ``"smollm2-135m"``.

    ``revision`` pins a hub commit/tag (ignored for local directories by transformers).
    Errors name the path and say what to pass instead.
    """
    name = str(name_or_path)
    if name in SMOLLM2_NAMES:
        name = str(smollm2_dir())
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(name).expanduser()
    looks_local = path.exists() or name.startswith((".", "/", "~"))
    if looks_local and not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{name!r} is not a model directory (no config.json); pass a directory written by "
            "save_pretrained (e.g. runs/<run>/checkpoint), a hub name, or 'smollm2-135m'."
        )
    src = str(path) if looks_local else name
    if looks_local:
        _register_local_architectures(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(src, revision=revision, dtype=torch_dtype)
    except OSError as e:
        raise OSError(
            f"could not load the model {name!r}: {e}. For hub names check the name and network "
            "access (HF_HUB_OFFLINE=1 only allows models already in the local cache); "
            "for local models pass the checkpoint directory."
        ) from e
    model.to(device)
    model.eval()
    return model, prepare_tokenizer(tokenizer)


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
