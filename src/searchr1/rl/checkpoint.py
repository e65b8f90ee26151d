"""Atomic, resumable checkpoints that belong to one run.

``<output_dir>/run.json`` names the run (``run_id``); ``<output_dir>/checkpoints/step_000010/``::

    policy/            save_pretrained (safetensors) + tokenizer — loads in plain transformers / vLLM
                       (with LoRA: the adapter; the merged model is written at the end of training)
    critic/            PPO critic backbone (save_pretrained) + value_head.safetensors
    sharded/           under ``distributed.strategy=fsdp``: policy, critic and optimizer shards
                       (``torch.distributed.checkpoint``; resumes at any world size, and resume reads
                       them); policy/ and critic/ are then the consolidated exports of the gathered weights
    trainer_state.pt   optimizer / scheduler state dicts, RNG states (python, numpy, torch),
                       data position, step, KL coefficient, counters, run id — tensors and plain
                       Python values only, read back with ``torch.load(weights_only=True)``
    checkpoint.json    {"run_id", "step"}
    COMPLETE           written last, after every file and directory was fsynced; a directory
                       without it is ignored

A checkpoint is written under ``.tmp_step_N_<pid>``, fsynced and marked COMPLETE; an existing
``step_N`` is renamed aside (``.tmp_old_step_N_<pid>``), the new one renamed into place, then the
old one removed, so at every instant a complete copy exists under some name. :func:`recover`
(run at start) puts a copy back where a crash interrupted the swap and removes other ``.tmp_*``
leftovers. Pruning keeps the newest ``keep_last`` checkpoints of this run only.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import random
import re
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from searchr1.errors import SearchR1Error, UsageError

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
DONE_FILE = "COMPLETE"
META_FILE = "checkpoint.json"
RUN_FILE = "run.json"
_STEP_RE = re.compile(r"^step_(\d+)$")
_LEFTOVER_RE = re.compile(r"^\.tmp_(old_)?step_(\d+)_\d+$")


class CheckpointError(SearchR1Error):
    """A checkpoint that cannot be read (names the file), or none left to resume from."""


class OutputDirInUse(UsageError):
    """A fresh run pointed at a directory that holds another run's checkpoints."""


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


# ----------------------------------------------------------------------------- durability
def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """fsync every file under ``path``, then every directory (deepest first, ``path`` last)."""
    path = Path(path)
    dirs = []
    for d, _, files in os.walk(path):
        dirs.append(Path(d))
        for f in files:
            _fsync_path(Path(d) / f)
    for d in reversed(dirs):
        _fsync_path(d)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------- listing
def checkpoint_run_id(ckpt: str | Path) -> str | None:
    """The run id stored in a checkpoint; None for checkpoints written before run ids."""
    f = Path(ckpt) / META_FILE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8")).get("run_id")
    except (ValueError, AttributeError):
        return None


def step_dirs(root: str | Path) -> list[Path]:
    """Every ``step_*`` directory under ``root`` (complete or not), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_dirs(root: str | Path, run_id: str | None = None, *, any_run: bool = True) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first; with ``any_run=False`` only ``run_id``'s."""
    dirs = [p for p in step_dirs(root) if (p / DONE_FILE).is_file()]
    return dirs if any_run else [p for p in dirs if checkpoint_run_id(p) == run_id]


def latest_checkpoint(root: str | Path) -> Path | None:
    dirs = checkpoint_dirs(root)
    return dirs[-1] if dirs else None


# ----------------------------------------------------------------------------- writing
def save_checkpoint(root: str | Path, step: int, policy, tokenizer, state: dict,
                    critic=None, keep_last: int = 2, run_id: str | None = None, sharded: Path | None = None) -> Path:
    """Write ``root/step_<step>`` durably, swap it into place and prune this run's older ones.

    sharded: a ``torch.distributed.checkpoint`` directory every rank has written (fsdp); it is moved
    into the checkpoint as ``sharded/`` before the checkpoint is marked complete."""
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
    torch.save({**state, "run_id": run_id}, tmp / STATE_FILE)
    if sharded is not None:
        os.rename(sharded, tmp / "sharded")
    (tmp / META_FILE).write_text(json.dumps({"run_id": run_id, "step": step}) + "\n", encoding="utf-8")
    fsync_tree(tmp)
    _write_synced(tmp / DONE_FILE, f"{step}\n")
    _fsync_path(tmp)
    aside = root / f".tmp_old_step_{step:06d}_{os.getpid()}"
    if final.exists():
        os.rename(final, aside)
    os.rename(tmp, final)
    _fsync_path(root)
    if aside.exists():
        shutil.rmtree(aside)
    prune(root, keep_last, run_id)
    return final


def prune(root: Path, keep_last: int, run_id: str | None) -> None:
    """Remove all but the newest ``keep_last`` complete checkpoints of ``run_id`` (others untouched).

    Each is renamed to a ``.tmp_`` name first, so a crash mid-removal leaves no half-deleted
    ``step_*`` behind (the leftover is cleaned at the next start)."""
    for old in checkpoint_dirs(root, run_id, any_run=False)[:-keep_last]:
        doomed = root / f".tmp_prune_{old.name}_{os.getpid()}"
        os.rename(old, doomed)
        shutil.rmtree(doomed)


def recover(root: str | Path) -> list[str]:
    """Repair what a crash during a save left behind; returns what was done (one line each).

    A ``step_N`` missing while a complete copy of it lies under ``.tmp_step_N_*`` (the new one,
    preferred) or ``.tmp_old_step_N_*`` (the one being replaced) is renamed back into place; every
    other ``.tmp_*`` directory is removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    done = []
    leftovers = sorted((p for p in root.iterdir() if p.name.startswith(".tmp_")),
                       key=lambda p: (not p.name.startswith(".tmp_step_"), p.name))
    for p in leftovers:
        m = _LEFTOVER_RE.match(p.name)
        final = root / f"step_{int(m.group(2)):06d}" if m else None
        if final is not None and not final.exists() and (p / DONE_FILE).is_file():
            os.rename(p, final)
            done.append(f"checkpoints: restored {final.name} from {p.name} (a save was interrupted)")
        elif p.is_dir():
            shutil.rmtree(p)
            done.append(f"checkpoints: removed {p.name} left by an interrupted save")
        else:
            p.unlink()
            done.append(f"checkpoints: removed {p.name} left by an interrupted save")
    if done:
        _fsync_path(root)
    return done


def set_aside_unreadable(ckpt: Path) -> Path:
    """Rename an unreadable checkpoint to ``unreadable-step_N[-k]`` (kept for inspection, never loaded)."""
    n, dest = 0, ckpt.with_name(f"unreadable-{ckpt.name}")
    while dest.exists():
        n += 1
        dest = ckpt.with_name(f"unreadable-{ckpt.name}-{n}")
    os.rename(ckpt, dest)
    return dest


# ----------------------------------------------------------------------------- reading
def load_state(ckpt: str | Path) -> dict:
    """The trainer state dict of a checkpoint (weights_only: no arbitrary unpickling)."""
    f = Path(ckpt) / STATE_FILE
    if not f.is_file():
        raise CheckpointError(f"{f} missing: {ckpt} is not a complete checkpoint (look for step_* with COMPLETE)")
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, OSError, ValueError) as e:
        raise CheckpointError(f"{f} is unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e


# ----------------------------------------------------------------------------- runs
def read_run(out_dir: str | Path) -> dict | None:
    """``output_dir/run.json`` as a dict, or None when absent."""
    f = Path(out_dir) / RUN_FILE
    if not f.is_file():
        return None
    try:
        run = json.loads(f.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CheckpointError(f"{f} is not valid JSON ({e}); restore it or move the directory aside") from e
    if not isinstance(run, dict) or not run.get("run_id"):
        raise CheckpointError(f"{f} has no run_id; restore it or move the directory aside")
    return run


def _write_run(out_dir: Path, run_id: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (RUN_FILE + ".tmp")
    _write_synced(tmp, json.dumps({"run_id": run_id, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                              time.gmtime())}) + "\n")
    os.replace(tmp, out_dir / RUN_FILE)
    _fsync_path(out_dir)


def _move_aside(out_dir: Path) -> Path:
    """Move everything in ``out_dir`` except earlier ``previous-*`` folders to ``previous-<n>/``."""
    n = 1
    while (out_dir / f"previous-{n}").exists():
        n += 1
    dest = out_dir / f"previous-{n}"
    items = [p for p in out_dir.iterdir() if not p.name.startswith("previous-")]
    dest.mkdir()
    for p in items:
        os.rename(p, dest / p.name)
    _fsync_path(out_dir)
    return dest


def start_run(out_dir: str | Path, resume: bool, overwrite: bool = False) -> str:
    """Repair ``out_dir``'s checkpoints and return the id of the run that writes there now.

    ``resume``: the run named in run.json (a new id for directories from before run ids).
    Fresh: refuses a directory holding checkpoints unless ``overwrite``, which moves the
    old run to ``previous-<n>/`` (nothing is deleted)."""
    if resume and overwrite:
        raise UsageError("--resume continues the run in output_dir and --overwrite moves it aside; pass one")
    out_dir = Path(out_dir)
    root = out_dir / "checkpoints"
    for line in recover(root):
        log.warning(line)
    run = read_run(out_dir)
    if resume:
        if not checkpoint_dirs(root):
            raise FileNotFoundError(f"--resume: no complete checkpoint under {root}; "
                                    "train without --resume first or point output_dir at the old run")
        if run is not None:
            return run["run_id"]
        run_id = uuid.uuid4().hex[:12]
        _write_run(out_dir, run_id)
        return run_id
    used = step_dirs(root)
    if used:
        if not overwrite:
            who = f"run {run['run_id']}" if run else "an earlier run"
            names = ", ".join(p.name for p in used[-3:])
            raise OutputDirInUse(
                f"output_dir {out_dir} holds checkpoints of {who} ({names}); pass --resume to continue it, "
                f"--overwrite to move it to {out_dir}/previous-<n>/ (nothing is deleted), or choose another "
                "output_dir")
        dest = _move_aside(out_dir)
        log.warning("--overwrite: moved the earlier run in %s to %s", out_dir, dest)
    run_id = uuid.uuid4().hex[:12]
    _write_run(out_dir, run_id)
    return run_id
