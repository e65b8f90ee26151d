"""A backend that plays back scripted turns: exact, model-free rollouts for tests and examples.

Row ``i`` emits ``scripts[i][t]`` on its turn ``t`` (tokenized on its own), token by token, with the
same stop-string, EOS and budget rules as a model backend, so the engine cannot tell the difference.
A turn whose text ends without a stop string or EOS token
(put ``tokenizer.eos_token`` in the text to emit one) ends as if it hit the turn budget; a row with
no script left emits EOS. ``contexts[i]`` records every token the row was fed (prompt and
injected tokens) plus what it emitted, i.e. the context a model would have seen.
"""
from __future__ import annotations

from collections.abc import Sequence

from searchr1.rollout.backends.base import Generation, TurnParams
from searchr1.models.stopping import StopChecker


class ScriptedBackend:
    def __init__(self, tokenizer, scripts: Sequence[Sequence[str]], logprob: float = -1.0):
        if tokenizer.eos_token_id is None:
            raise ValueError("ScriptedBackend needs a tokenizer with eos_token_id; set tokenizer.eos_token.")
        self.tokenizer = tokenizer
        self.scripts = [list(s) for s in scripts]
        self.logprob = logprob
        self.sessions: list[ScriptedSession] = []

    def open(self, prompts: Sequence[Sequence[int]], seed: int | None = None) -> "ScriptedSession":
        if len(prompts) > len(self.scripts):
            raise ValueError(f"{len(prompts)} prompts but only {len(self.scripts)} scripts; give one script per row.")
        session = ScriptedSession(self, prompts)
        self.sessions.append(session)
        return session


class ScriptedSession:
    def __init__(self, backend: ScriptedBackend, prompts: Sequence[Sequence[int]]):
        self.backend = backend
        self.contexts = [list(p) for p in prompts]
        self.emitted: list[list[list[int]]] = [[] for _ in prompts]  # row -> turn -> ids
        self.turn = [0] * len(prompts)
        self.released: set[int] = set()

    def generate(self, rows, appended, max_new_tokens, params: TurnParams) -> list[Generation]:
        tok = self.backend.tokenizer
        stop = StopChecker(tok, params.stop)
        out = []
        for row, extra, budget in zip(rows, appended, max_new_tokens):
            if row in self.released:
                raise RuntimeError(f"row {row} was released and cannot generate again")
            self.contexts[row].extend(extra)
            script = self.backend.scripts[row]
            t = self.turn[row]
            self.turn[row] += 1
            planned = tok.encode(script[t], add_special_tokens=False) if t < len(script) else [tok.eos_token_id]
            ids: list[int] = []
            finish, hit = "length", None
            for token in planned:
                if len(ids) >= budget:
                    break
                ids.append(token)
                if token == tok.eos_token_id:
                    finish = "eos"
                    break
                hit = stop(ids)
                if hit is not None:
                    finish = "stop"
                    break
            self.contexts[row].extend(ids)
            self.emitted[row].append(ids)
            logprobs = [self.backend.logprob] * len(ids) if params.return_logprobs else None
            out.append(Generation(ids, logprobs, finish, hit))
        return out

    def release(self, rows) -> None:
        self.released.update(rows)

    def close(self) -> None:
        pass
