"""Running the rollout engine for evaluation: greedy config from the eval context, text segments."""
from __future__ import annotations

from searchr1.eval.types import EvalContext


def rollout_config(ctx: EvalContext, search: bool, max_turn_tokens: int | None = None):
    from searchr1.rollout.config import RolloutConfig

    d = ctx.decoding
    greedy = d.temperature == 0
    return RolloutConfig(
        max_turns=ctx.max_turns if search else 1, topk=ctx.topk, search_enabled=search,
        max_turn_tokens=max_turn_tokens or d.max_new_tokens, do_sample=not greedy,
        temperature=1.0 if greedy else d.temperature, top_p=d.top_p, seed=d.seed, return_logprobs=False)


def hf_backend(ctx: EvalContext):
    from searchr1.rollout.backends.hf import HFBackend

    return HFBackend(ctx.model, ctx.tokenizer)


def segments_of(tokenizer, ids: list[int], mask: list[int]) -> list[list[str]]:
    """Decode runs of equal provenance: [["model", text], ["env", text], ...]."""
    out: list[list[str]] = []
    start = 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or mask[k] != mask[start]:
            text = tokenizer.decode(ids[start:k], skip_special_tokens=False)
            out.append(["model" if mask[start] else "env", text])
            start = k
    return out


def run_engine(ctx: EvalContext, prompts: list[str], example_ids: list[str], search: bool,
               max_turn_tokens: int | None = None, backend=None):
    """(trajectories, segments) for chat-formatted ``prompts``."""
    from searchr1.rollout.engine import RolloutEngine

    engine = RolloutEngine(backend or hf_backend(ctx), ctx.retriever if search else None, ctx.tokenizer,
                           rollout_config(ctx, search, max_turn_tokens))
    trajs = engine.run(prompts, example_ids=example_ids)
    return trajs, [segments_of(ctx.tokenizer, t.response_ids, t.response_mask) for t in trajs]
