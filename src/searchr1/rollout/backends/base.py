"""The interface the rollout engine drives: a backend opens a *session* over a batch of prompts and
continues chosen rows turn by turn, so a backend may keep per-row state (an HF KV cache, a vLLM
prefix cache) between turns.

Token-in / token-out: the engine hands token ids in (the prompt, then the injected observation
tokens of each turn) and gets the sampled token ids back; nothing is decoded and re-encoded.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class TurnParams:
    """Sampling settings of one turn, shared by all rows of the call."""

    stop: tuple[str, ...] = ()
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    do_sample: bool = True
    return_logprobs: bool = True


@dataclass
class Generation:
    """What one row sampled in one turn."""

    token_ids: list[int]
    logprobs: list[float] | None  # (len(token_ids),) log p of each sampled token, or None
    finish: str                   # "stop" (a stop string completed) | "eos" | "length"
    stop: str | None = None       # the stop string that ended the turn
    n_tokens: int | None = None   # tokens the model reports when token_ids re-encode its text (API backends)


@runtime_checkable
class BackendSession(Protocol):
    def generate(
        self,
        rows: Sequence[int],
        appended: Sequence[Sequence[int]],
        max_new_tokens: Sequence[int],
        params: TurnParams,
    ) -> list[Generation]:
        """Extend each row's context by ``appended[i]`` (injected tokens, possibly empty), then sample
        at most ``max_new_tokens[i]`` tokens until a stop string or EOS. Returns one Generation per row."""
        ...

    def release(self, rows: Sequence[int]) -> None:
        """These rows are finished for good; their state may be freed."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class Backend(Protocol):
    def open(self, prompts: Sequence[Sequence[int]], seed: int | None = None) -> BackendSession:
        """Start a batch; row ``i`` of the session is ``prompts[i]``."""
        ...
