"""Parse one turn of policy text into an action.

Rules (each has a test in tests/rollout/test_tags.py):

* The action is the complete ``<search>…</search>`` or ``<answer>…</answer>`` whose **closing tag
  comes first**; its content runs from the last matching opening tag before that closing tag
  (``"<search> a <search> b </search>"`` searches ``"b"``). Text after it is ignored.
* A search whose query is empty or whitespace is invalid.
* A query longer than ``max_query_chars`` is truncated to that many characters; the number of
  characters cut is returned (the engine records it in ``Trajectory.truncated["query_chars"]``).
* With ``allow_search=False`` (the last turn, or the no-search baseline) search tags are plain
  text: only an answer is an action.
* Anything else (no tags, an unclosed tag, a closing tag without an opener) is invalid; the engine
  then appends :data:`INVALID_ACTION_TEXT`, Search-R1's corrective message, verbatim.
"""
from __future__ import annotations

from dataclasses import dataclass

INVALID_ACTION_TEXT = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer between "
    "<answer> and </answer>. Let me try again.\n"
)

TAGS = ("search", "answer")


@dataclass(frozen=True)
class Action:
    kind: str                 # "search" | "answer" | "invalid"
    content: str = ""         # stripped query or answer text ("" when invalid)
    query_chars_cut: int = 0  # characters removed from an over-long query
    reason: str = ""          # why an action is invalid (for logs)


def _complete(text: str, tag: str) -> tuple[int, str] | None:
    """(end index of the first closing tag, content after the last opener before it), or None."""
    close = f"</{tag}>"
    end = text.find(close)
    while end != -1:
        start = text.rfind(f"<{tag}>", 0, end)
        if start != -1:
            return end + len(close), text[start + len(tag) + 2 : end]
        end = text.find(close, end + 1)
    return None


def parse_action(text: str, allow_search: bool = True, max_query_chars: int = 512) -> Action:
    """The first complete action of a turn's policy text."""
    found = []
    for tag in TAGS:
        if tag == "search" and not allow_search:
            continue
        hit = _complete(text, tag)
        if hit is not None:
            found.append((hit[0], tag, hit[1]))
    if not found:
        return Action("invalid", reason="no complete <search> or <answer> action")
    _, kind, content = min(found)
    content = content.strip()
    if kind == "search":
        if not content:
            return Action("invalid", reason="empty search query")
        if len(content) > max_query_chars:
            cut = len(content) - max_query_chars
            return Action("search", content[:max_query_chars].rstrip(), query_chars_cut=cut)
    return Action(kind, content)
