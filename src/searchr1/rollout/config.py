"""Configuration of the multi-turn search rollout."""
from __future__ import annotations

from dataclasses import dataclass

from searchr1.protocol import ANSWER_STOP, SEARCH_STOP


@dataclass
class RolloutConfig:
    """How the engine samples, searches and budgets one batch of trajectories."""

    max_turns: int = 4
    """Policy turns per trajectory. On the last turn searching is disabled: ``</search>`` is not a
    stop string and search tags are plain text; a row without an answer then ends as ``max_turns``."""
    topk: int = 3
    """Passages retrieved per query."""
    max_prompt_tokens: int = 2048
    """Prompt budget; longer prompts are cut as ``prompt_truncation`` says (recorded in ``truncated``)."""
    prompt_truncation: str = "left"
    """``"left"`` keeps the last ``max_prompt_tokens`` tokens (the generation header survives),
    ``"error"`` raises on a prompt that is too long."""
    max_turn_tokens: int = 500
    """Tokens the policy may sample in one turn before the turn is cut (an invalid action)."""
    max_obs_tokens: int = 500
    """Tokens of one ``<information>`` observation; longer results are cut (recorded)."""
    max_total_tokens: int = 4096
    """Prompt + response tokens of one trajectory (the model's context). Observations are cut to
    fit; a row with no room left to generate ends with finish reason ``budget``."""
    max_query_chars: int = 512
    """Longer queries are truncated to this many characters before retrieval (recorded as
    ``truncated["query_chars"]``, the characters cut)."""
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0 disables top-k filtering."""
    do_sample: bool = True
    """False = greedy decoding (temperature, top_p and top_k are then ignored)."""
    search_enabled: bool = True
    """False gives the no-search ``r1`` baseline: only ``</answer>`` stops a turn and search tags
    are plain text (never an action)."""
    stop: tuple[str, ...] = ()
    """Extra stop strings, on top of ``</search>`` (when searching) and ``</answer>``."""
    return_logprobs: bool = True
    """Record the log-prob of every sampled token (PPO's old log-probs): ``log_softmax(logits /
    temperature)`` at the sampled token, before top-k/top-p filtering -- the quantity a trainer
    recomputes by dividing its logits by the *same* rollout temperature (``log_softmax(logits)``
    under greedy decoding). Injected tokens get 0.0."""
    seed: int | None = None
    """Seed of the backend's sampler; the same seed, prompts and model give the same trajectories."""

    def __post_init__(self) -> None:
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {self.max_turns}; use 1 for a single answer turn.")
        if self.topk < 1:
            raise ValueError(f"topk must be >= 1, got {self.topk}; it is the number of passages per search.")
        for name in ("max_prompt_tokens", "max_turn_tokens", "max_obs_tokens", "max_total_tokens", "max_query_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive number of tokens/characters, got {getattr(self, name)}.")
        if self.prompt_truncation not in ("left", "error"):
            raise ValueError(f"prompt_truncation must be 'left' or 'error', got {self.prompt_truncation!r}.")
        if self.max_total_tokens <= self.max_prompt_tokens:
            raise ValueError(
                f"max_total_tokens ({self.max_total_tokens}) must exceed max_prompt_tokens "
                f"({self.max_prompt_tokens}) to leave room for a response; raise max_total_tokens."
            )
        if self.temperature <= 0:
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; for greedy decoding set do_sample=False."
            )
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}; 1.0 disables nucleus filtering.")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}; 0 disables top-k filtering.")
        self.stop = tuple(self.stop)
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty; remove the empty string from `stop`.")

    def stop_strings(self, last_turn: bool) -> tuple[str, ...]:
        """Stop strings of a turn: ``</search>`` only while searching is allowed."""
        base = (SEARCH_STOP, ANSWER_STOP) if self.search_allowed(last_turn) else (ANSWER_STOP,)
        return base + tuple(s for s in self.stop if s not in base)

    def search_allowed(self, last_turn: bool) -> bool:
        return self.search_enabled and not last_turn
