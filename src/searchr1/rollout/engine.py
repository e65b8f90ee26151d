"""The multi-turn search rollout: one loop over turns, driven by per-row state.

Each turn every unfinished row samples until ``</search>``, ``</answer>``, EOS or its turn budget
(the backend stops at the stop string: no token is sampled past it). The turn's text is parsed
(:func:`searchr1.protocol.parse_action`); all queries of the turn, across the batch, go to the
retriever in ONE batched call (when that call fails, each query is retried alone, so one bad query
fails only its own row); observations (or Search-R1's corrective message for an invalid action) are
tokenized on their own and appended with mask 0. The last turn is a flag on the same loop:
searching is disabled there. Each trajectory records its ``segments`` (decoded runs of equal
provenance) as it grows.

Hooks (both optional):

* ``observe(rows, queries, hits) -> bodies``: the observation body of each successful search
  (default: :func:`searchr1.data.prompts.passages_body` of the hits); ``rows`` index the batch.
  Search-o1's reason-in-documents step condenses the documents here.
* ``on_event(row, kind, payload)``: live events, in the order they happen: ``"turn"``
  ``{"text"}`` (a turn's policy text), ``"answer"`` ``{"answer"}``, ``"invalid"`` ``{"reason"}``,
  ``"search"`` ``{"query", "hits", "error"}`` (error: None or the failure's text) and
  ``"observation"`` ``{"text"}`` (every injected text: observations and corrective messages, as
  appended). ``searchr1 ask`` prints them.

Finish reasons: ``answer`` (a complete ``<answer>``), ``eos`` (the policy ended its message without
an action), ``max_turns`` (no answer after the last turn, including a row that still searched), and
``budget`` (no room left under ``max_total_tokens``).

Differences from Search-R1: generation stops at the stop string instead of sampling the full
per-turn budget and cutting; the policy's tokens are never decoded and re-encoded between turns;
EOS without an action ends the row (Search-R1 would append the corrective message and go on).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from searchr1.data.prompts import apply_chat_template, make_prompt, passages_body
from searchr1.protocol import (
    INVALID_ACTION_TEXT, OBS_CLOSE, OBS_OPEN, failure_body, information, parse_action,
)
from searchr1.rollout.backends.base import Backend, Generation, TurnParams
from searchr1.rollout.config import RolloutConfig
from searchr1.rollout.types import Trajectory
from searchr1.search.base import Hit, Retriever, SearchError

Observe = Callable[[list[int], list[str], list[list[Hit]]], list[str]]
OnEvent = Callable[[int, str, dict], None]


@dataclass
class _Row:
    """Mutable per-row state; ``traj`` is what the learner gets."""

    traj: Trajectory
    done: bool = False
    pending: list[int] = field(default_factory=list)  # injected tokens not yet fed to the backend

    def add(self, ids: Sequence[int], sampled: bool, text: str, logprobs: Sequence[float] | None = None) -> None:
        t = self.traj
        if text:
            if t.segments and t.segments[-1][1] == sampled:
                t.segments[-1] = (t.segments[-1][0] + text, sampled)
            else:
                t.segments.append((text, sampled))
        t.response_ids.extend(ids)
        t.response_mask.extend([1 if sampled else 0] * len(ids))
        if t.response_logprobs is not None:
            t.response_logprobs.extend(logprobs if (sampled and logprobs is not None) else [0.0] * len(ids))
        if not sampled:
            self.pending.extend(ids)

    def cut(self, budget: str, n: int) -> None:
        if n > 0:
            self.traj.truncated[budget] = self.traj.truncated.get(budget, 0) + n

    def finish(self, reason: str) -> None:
        self.done, self.traj.finish_reason = True, reason


class RolloutEngine:
    """``RolloutEngine(backend, retriever, tokenizer, config).run(prompts) -> list[Trajectory]``.

    ``tokenizer`` is a Hugging Face tokenizer (``encode``/``decode``); prompts given as strings are
    already chat-formatted and are encoded without special tokens. ``retriever`` may be None only
    when ``config.search_enabled`` is False. ``observe`` and ``on_event``: see the module docstring.
    """

    def __init__(self, backend: Backend, retriever: Retriever | None, tokenizer, config: RolloutConfig | None = None,
                 observe: Observe | None = None, on_event: OnEvent | None = None):
        self.backend = backend
        self.retriever = retriever
        self.tokenizer = tokenizer
        self.config = config or RolloutConfig()
        self.observe = observe
        self.on_event = on_event
        if retriever is None and self.config.search_enabled:
            raise ValueError("a retriever is required when search_enabled=True; pass one or set search_enabled=False.")
        self.timings: dict[str, float] = {}
        self._invalid_ids = self._encode(INVALID_ACTION_TEXT)
        self._obs_open_ids = self._encode(OBS_OPEN)
        self._obs_close_ids = self._encode(OBS_CLOSE)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _emit(self, row: int, kind: str, payload: dict) -> None:
        if self.on_event is not None:
            self.on_event(row, kind, payload)

    # -- public -------------------------------------------------------------------------------
    def run(
        self,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        example_ids: Sequence[str] | None = None,
        group_ids: Sequence[int] | None = None,
    ) -> list[Trajectory]:
        """One trajectory per prompt, in order."""
        cfg = self.config
        n = len(prompts)
        for name, seq in (("example_ids", example_ids), ("group_ids", group_ids)):
            if seq is not None and len(seq) != n:
                raise ValueError(f"{name} has {len(seq)} entries for {n} prompts; give one per prompt.")
        rows = [self._new_row(p, i, example_ids, group_ids) for i, p in enumerate(prompts)]
        timings = {"time/generate": 0.0, "time/search": 0.0}
        if n == 0:
            self.timings = timings
            return []
        session = self.backend.open([r.traj.prompt_ids for r in rows], seed=cfg.seed)
        released: set[int] = set()
        try:
            for turn in range(1, cfg.max_turns + 1):
                last = turn == cfg.max_turns
                live = [i for i, r in enumerate(rows) if not r.done]
                live = [i for i in live if self._has_room(rows[i])]
                if not live:
                    break
                params = TurnParams(
                    stop=cfg.stop_strings(last), temperature=cfg.temperature, top_p=cfg.top_p,
                    top_k=cfg.top_k, do_sample=cfg.do_sample, return_logprobs=cfg.return_logprobs,
                )
                budgets = [min(cfg.max_turn_tokens, self._room(rows[i])) for i in live]
                t0 = time.perf_counter()
                gens = session.generate(live, [rows[i].pending for i in live], budgets, params)
                timings["time/generate"] += time.perf_counter() - t0
                if len(gens) != len(live):
                    raise RuntimeError(f"backend returned {len(gens)} generations for {len(live)} rows")
                searches: list[tuple[int, str]] = []
                for i, gen in zip(live, gens):
                    rows[i].pending = []
                    rows[i].traj.turns = turn
                    query = self._step(i, rows[i], gen, last)
                    if query is not None:
                        searches.append((i, query))
                if searches:
                    t0 = time.perf_counter()
                    self._search(rows, searches)
                    timings["time/search"] += time.perf_counter() - t0
                done = [i for i, r in enumerate(rows) if r.done and i not in released]
                session.release(done)
                released.update(done)
            for r in rows:
                if not r.done:
                    r.finish("max_turns")
        finally:
            session.close()
        for r in rows:
            r.traj.response_text = self._decode(r.traj.response_ids)
        self.timings = timings
        return [r.traj for r in rows]

    # -- per-row steps --------------------------------------------------------------------------
    def _new_row(self, prompt, i, example_ids, group_ids) -> _Row:
        cfg = self.config
        ids = self._encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise ValueError(f"prompt {i} is empty; every row needs at least one prompt token.")
        cut = max(0, len(ids) - cfg.max_prompt_tokens)
        if cut and cfg.prompt_truncation == "error":
            raise ValueError(
                f"prompt {i} has {len(ids)} tokens > max_prompt_tokens={cfg.max_prompt_tokens}; "
                "shorten it, raise max_prompt_tokens, or set prompt_truncation='left'."
            )
        traj = Trajectory(
            prompt_ids=ids[cut:], response_ids=[], response_mask=[],
            response_logprobs=[] if cfg.return_logprobs else None,
            example_id=None if example_ids is None else example_ids[i],
            group_id=None if group_ids is None else group_ids[i],
        )
        row = _Row(traj)
        row.cut("prompt", cut)
        return row

    def _room(self, row: _Row) -> int:
        return self.config.max_total_tokens - len(row.traj.prompt_ids) - len(row.traj.response_ids)

    def _has_room(self, row: _Row) -> bool:
        if self._room(row) > 0:
            return True
        row.finish("budget")
        return False

    def _step(self, i: int, row: _Row, gen: Generation, last: bool) -> str | None:
        """Record a turn's sampled tokens and act on them; returns the query to run, if any."""
        cfg, t = self.config, row.traj
        text = self._decode(gen.token_ids)
        row.add(gen.token_ids, sampled=True, text=text, logprobs=gen.logprobs)
        t.generated_tokens += len(gen.token_ids) if gen.n_tokens is None else gen.n_tokens
        self._emit(i, "turn", {"text": text})
        action = parse_action(text, allow_search=cfg.search_allowed(last), max_query_chars=cfg.max_query_chars)
        if action.kind == "answer":
            t.valid_actions += 1
            t.answer = action.content
            row.finish("answer")
            self._emit(i, "answer", {"answer": action.content})
            return None
        if action.kind == "search":
            t.valid_actions += 1
            t.searches += 1
            t.queries.append(action.content)
            row.cut("query_chars", action.query_chars_cut)
            return action.content
        t.invalid_actions += 1
        self._emit(i, "invalid", {"reason": action.reason})
        if gen.finish == "eos":
            row.finish("eos")
        elif last:
            row.finish("max_turns")
        elif self._room(row) <= 0:
            row.finish("budget")
        else:
            self._inject(i, row, list(self._invalid_ids))
        return None

    def _inject(self, i: int, row: _Row, ids: list[int]) -> None:
        """Append injected tokens, cut to the room left under ``max_total_tokens`` (recorded)."""
        room = max(0, self._room(row))
        row.cut("total", len(ids) - room)
        text = self._decode(ids[:room]) if room else ""
        row.add(ids[:room], sampled=False, text=text)
        if text:
            self._emit(i, "observation", {"text": text})

    def _retrieve(self, queries: list[str]) -> list[list[Hit] | SearchError]:
        """Hits per query, or the SearchError of a query that failed even on its own."""
        k = self.config.topk
        try:
            results = self.retriever.search(queries, k)
        except SearchError as e:
            if len(queries) == 1:
                return [e]
            return [self._retrieve([q])[0] for q in queries]
        if len(results) != len(queries):
            raise RuntimeError(
                f"retriever returned {len(results)} result lists for {len(queries)} queries; "
                "a Retriever must return one list per query."
            )
        return [list(hits)[:k] for hits in results]

    def _search(self, rows: list[_Row], searches: list[tuple[int, str]]) -> None:
        results = self._retrieve([q for _, q in searches])
        found = [(i, q, r) for (i, q), r in zip(searches, results) if not isinstance(r, SearchError)]
        if self.observe is not None and found:
            bodies = self.observe([i for i, _, _ in found], [q for _, q, _ in found], [r for _, _, r in found])
            if len(bodies) != len(found):
                raise RuntimeError(f"observe returned {len(bodies)} bodies for {len(found)} searches; give one each.")
        else:
            bodies = [passages_body(r) for _, _, r in found]
        found_bodies = iter(bodies)
        for (i, q), r in zip(searches, results):
            t = rows[i].traj
            failed = isinstance(r, SearchError)
            t.search_failures += int(failed)
            t.retrieved_ids.append([] if failed else [h.doc.id for h in r])
            self._emit(i, "search", {"query": q, "hits": [] if failed else r, "error": str(r) if failed else None})
            self._observe(i, rows[i], failure_body(r) if failed else next(found_bodies))

    def _observe(self, i: int, row: _Row, body: str) -> None:
        """Append ``<information>body</information>``, cut to ``max_obs_tokens`` (recorded)."""
        ids = self._encode(information(body))
        limit = self.config.max_obs_tokens
        if len(ids) > limit:
            body_ids = self._encode(body)
            keep = max(0, limit - len(self._obs_open_ids) - len(self._obs_close_ids))
            row.cut("obs", len(body_ids) - keep)
            ids = self._obs_open_ids + body_ids[:keep] + self._obs_close_ids
        self._inject(i, row, ids)


def rollout_metrics(trajs: Sequence[Trajectory]) -> dict[str, float]:
    """Batch diagnostics: ``rollout/{turns,searches,response_len,invalid_rate,masked_frac,...}``."""
    n = max(1, len(trajs))
    tokens = sum(len(t.response_ids) for t in trajs)
    actions = sum(t.valid_actions + t.invalid_actions for t in trajs)
    out = {
        "rollout/turns": sum(t.turns for t in trajs) / n,
        "rollout/searches": sum(t.searches for t in trajs) / n,
        "rollout/response_len": tokens / n,
        "rollout/invalid_rate": sum(t.invalid_actions for t in trajs) / max(1, actions),
        "rollout/masked_frac": sum(len(t.response_mask) - sum(t.response_mask) for t in trajs) / max(1, tokens),
        "rollout/search_failures": sum(t.search_failures for t in trajs) / n,
        "rollout/answered": sum(t.answer is not None for t in trajs) / n,
    }
    for reason in ("answer", "eos", "max_turns", "budget"):
        out[f"rollout/finish_{reason}"] = sum(t.finish_reason == reason for t in trajs) / n
    return out


def build_prompts(examples: Sequence, tokenizer, template: str = "search-r1") -> list[str]:
    """Chat-formatted prompt text per example (``QAExample`` or a plain question string).

    Uses :func:`searchr1.data.prompts.make_prompt` and the tokenizer's chat template when it has one.
    """
    out = []
    for ex in examples:
        question = ex if isinstance(ex, str) else ex.question
        out.append(apply_chat_template(tokenizer, make_prompt(question, template)))
    return out
