"""Atomic, resumable checkpoints.

``<output_dir>/checkpoints/step_000010/``::

    policy/            save_pretrained (safetensors) + tokenizer — loads in plain transformers / vLLM
                       (with LoRA: the adapter; the merged model is written at the end of training)
    critic/            PPO critic backbone (save_pretrained) + value_head.safetensors
    trainer_state.pt   optimizer / scheduler state dicts, RNG states (python, numpy, torch),
                       data position, step, KL coefficient, counters — tensors and plain
                       Python values only, read back with ``torch.load(weights_only=True)``
    COMPLETE           written last; a directory without it is ignored

Each checkpoint is written to a temporary directory and renamed into place, so a
crash never leaves a half-written ``step_*``. Only the newest ``keep_last`` are kept.
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"
DONE_FILE = "COMPLETE"
_STEP_RE = re.compile(r"^step_(\d+)$")


def rng_state() -> dict:
    """Python, numpy and torch (CPU + CUDA) RNG states as tensors / plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dirs(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_RE.match(p.name)) and (p / DONE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


def save_checkpoint(root: str | Path, step: int, policy, tokenizer, state: dict,
                    critic=None, keep_last: int = 2) -> Path:
    """Write ``root/step_<step>`` atomically and prune to the newest ``keep_last``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp_step_{step:06d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    policy.save_pretrained(tmp / "policy", safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "policy")
    if critic is not None:
        critic.save_pretrained(tmp / "critic")
    torch.save(state, tmp / STATE_FILE)
    (tmp / DONE_FILE).write_text(f"{step}\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoint_dirs(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_state(ckpt: str | Path) -> dict:
    """The trainer state dict of a checkpoint (weights_only: no arbitrary unpickling)."""
    f = Path(ckpt) / STATE_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{f} missing: {ckpt} is not a complete checkpoint (look for step_* with COMPLETE)")
    return torch.load(f, map_location="cpu", weights_only=True)
