"""Running the rollout engine for evaluation: the backend for the context's model, a greedy config
from its decoding settings, and predictions from trajectories.

A local model (``ctx.model`` and ``ctx.tokenizer``) runs on :class:`HFBackend` (or on
``ctx.rollout_backend``, e.g. vLLM), token-in/token-out, with the rollout's default budgets, exactly as
in training. Any other generator (an API model, a
scripted test generator) runs on :class:`ChatBackend` with the lossless :class:`ByteTokenizer`;
its budgets would count bytes, so they are lifted (the endpoint's context is the limit) and only the
per-turn token budget, which the endpoint counts in its own tokens, applies.
"""
from __future__ import annotations

import time
from collections.abc import Sequence

from searchr1.data.prompts import apply_chat_template
from searchr1.data.qa import QAExample
from searchr1.eval.methods.base import score
from searchr1.eval.types import EvalContext, Prediction
from searchr1.rollout.backends.openai import ByteTokenizer, ChatBackend
from searchr1.rollout.config import RolloutConfig
from searchr1.rollout.engine import Observe, OnEvent, RolloutEngine
from searchr1.rollout.types import Trajectory

_UNBOUNDED = 1 << 30  # text backends: no byte budgets on prompts and observations


ENGINES = ("auto", "rollout", "text")


class EngineParts:
    """The backend and tokenizer one evaluation run uses for every engine call.

    ``engine``: ``"rollout"`` = HFBackend (needs a local model), ``"text"`` = ChatBackend over
    ``ctx.generator``, ``"auto"`` = HFBackend when the context holds a local model.
    """

    def __init__(self, ctx: EvalContext, engine: str = "auto"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}.")
        has_local = ctx.model is not None and ctx.tokenizer is not None
        if engine == "rollout" and not has_local:
            raise ValueError("engine='rollout' needs a local model: set ctx.model and ctx.tokenizer "
                             "(API models use engine='text').")
        self.local = has_local if engine == "auto" else engine == "rollout"
        if self.local:
            from searchr1.rollout.backends.hf import HFBackend

            self.tokenizer = ctx.tokenizer
            self.backend = ctx.rollout_backend or HFBackend(ctx.model, ctx.tokenizer)
        else:
            self.tokenizer = ByteTokenizer()
            self.backend = ChatBackend(ctx.generator, self.tokenizer)

    def prompt(self, text: str) -> str:
        """``text`` as one user message: chat-formatted for local models, raw for chat endpoints."""
        return apply_chat_template(self.tokenizer, text)


def rollout_config(ctx: EvalContext, search: bool, max_turn_tokens: int | None = None, local: bool = True,
                   stop: Sequence[str] = ()) -> RolloutConfig:
    d = ctx.decoding
    greedy = d.temperature == 0
    budgets = {} if local else {"max_prompt_tokens": _UNBOUNDED, "max_obs_tokens": _UNBOUNDED,
                                "max_total_tokens": 2 * _UNBOUNDED}
    return RolloutConfig(
        max_turns=ctx.max_turns if search else 1, topk=ctx.topk, search_enabled=search,
        max_turn_tokens=max_turn_tokens or d.max_new_tokens, do_sample=not greedy,
        temperature=1.0 if greedy else d.temperature, top_p=d.top_p, seed=d.seed, return_logprobs=False,
        stop=tuple(stop), **budgets)


def run_engine(ctx: EvalContext, parts: EngineParts, prompts: list[str], search: bool, *,
               example_ids: list[str] | None = None, max_turn_tokens: int | None = None, stop: Sequence[str] = (),
               observe: Observe | None = None, on_event: OnEvent | None = None) -> list[Trajectory]:
    """One trajectory per prompt (``prompts`` already formatted with ``parts.prompt``)."""
    config = rollout_config(ctx, search, max_turn_tokens, parts.local, stop)
    engine = RolloutEngine(parts.backend, ctx.retriever if search else None, parts.tokenizer, config,
                           observe=observe, on_event=on_event)
    return engine.run(prompts, example_ids=example_ids)


def model_text(traj: Trajectory, tokenizer) -> str:
    """Everything the model wrote, in order, without injected text or special tokens (an EOS token's
    text would otherwise end up in an answer read off free text)."""
    ids = [i for i, m in zip(traj.response_ids, traj.response_mask) if m]
    return tokenizer.decode(ids, skip_special_tokens=True)


def prediction(method: str, ex: QAExample, dataset: str, traj: Trajectory, started: float,
               answer: str | None, source: str, extra_tokens: int = 0) -> Prediction:
    """The scored Prediction of one example from its trajectory."""
    pred = Prediction(
        method=method, dataset=dataset, id=str(ex.id), question=ex.question,
        golden_answers=list(ex.golden_answers), answer=answer, answer_source=source, response=traj.response_text,
        segments=[["model" if sampled else "env", text] for text, sampled in traj.segments],
        turns=traj.turns, searches=traj.searches, response_tokens=traj.generated_tokens + extra_tokens,
        invalid_actions=traj.invalid_actions, valid_actions=traj.valid_actions,
        search_failures=traj.search_failures, queries=list(traj.queries),
        retrieved_ids=[list(x) for x in traj.retrieved_ids], finish_reason=traj.finish_reason,
        seconds=round(time.perf_counter() - started, 3))
    return score(pred, ex)
