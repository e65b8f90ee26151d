"""Stop-string detection on the decoded text of a row's new tokens, checked after every token.

Only a tail window of tokens is decoded each step (enough to hold the longest stop string), so the
check costs O(1) per token instead of re-decoding the whole turn. The token that completes a stop
string is kept whole (token-in / token-out); characters it carries after the stop string stay in
the recorded ids and are ignored by the action parser.

When every stop string ends in an ASCII character (``</search>``, ``</answer>``), a token can only
complete one if its own decoded text holds such a final character (an ASCII byte is never part of
a multi-byte sequence), so the tail is decoded only after those tokens; whether a token id holds one
is decoded once per id and remembered.
"""
from __future__ import annotations

from collections.abc import Sequence


class StopChecker:
    def __init__(self, tokenizer, stops: Sequence[str], window_slack: int = 8):
        self.tokenizer = tokenizer
        self.stops = tuple(stops)
        # A token decodes to >= 1 character except partial UTF-8 bytes, so this many tokens always
        # cover a stop string that the latest token completed.
        self.window = (max((len(s) for s in self.stops), default=0) + window_slack) * 2
        finals = {s[-1] for s in self.stops if s}
        self.finals = finals if finals and all(c.isascii() for c in finals) else None
        self._may_end: dict[int, bool] = {}   # token id -> its text holds a final character

    def _could_complete(self, token: int) -> bool:
        if self.finals is None:
            return True
        hit = self._may_end.get(token)
        if hit is None:
            text = self.tokenizer.decode([token], skip_special_tokens=False)
            hit = self._may_end[token] = any(c in text for c in self.finals)
        return hit

    def __call__(self, token_ids: Sequence[int]) -> str | None:
        """The stop string that the last token completed, or None. ``token_ids``: the turn so far."""
        if not self.stops or not token_ids or not self._could_complete(int(token_ids[-1])):
            return None
        tail = self.tokenizer.decode(list(token_ids[-self.window :]), skip_special_tokens=False)
        hits = [(tail.find(s), s) for s in self.stops if s in tail]
        return min(hits)[1] if hits else None
