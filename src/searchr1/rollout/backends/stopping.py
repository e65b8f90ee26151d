"""Stop-string detection on the decoded text of a row's new tokens, checked after every token.

Only a tail window of tokens is decoded each step (enough to hold the longest stop string), so the
check costs O(1) per token instead of re-decoding the whole turn. The token that completes a stop
string is kept whole (token-in / token-out); characters it carries after the stop string stay in
the recorded ids and are ignored by the action parser.
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

    def __call__(self, token_ids: Sequence[int]) -> str | None:
        """The stop string that the last token completed, or None. ``token_ids``: the turn so far."""
        if not self.stops or not token_ids:
            return None
        tail = self.tokenizer.decode(list(token_ids[-self.window :]), skip_special_tokens=False)
        hits = [(tail.find(s), s) for s in self.stops if s in tail]
        return min(hits)[1] if hits else None
