"""The Search-R1 protocol: one grammar, one parser, one wire format for rollout, rewards and eval.

Tags. The four block tags are ``<think>``, ``<search>``, ``<information>`` and ``<answer>``, each
closed by its ``</name>`` twin. The policy writes think/search/answer; the environment injects
``<information>`` observations (wire format: ``OBS_OPEN + body + OBS_CLOSE``) and, after an
invalid action, Search-R1's corrective message :data:`INVALID_ACTION_TEXT` (plain text).

A complete block (the one rule shared by :func:`parse_action` and :func:`extract_answer`). A closing
tag ``</x>`` and the last ``<x>`` before it form a complete block when no other ``</x>`` lies
between them; its content is the text between the two tags. So ``"<x> a <x> b </x>"`` holds the
block ``b``, ``"<x>a</x>b</x>"`` only the block ``a``, and an unclosed ``<x>`` or a stray ``</x>``
none.

* :func:`parse_action` (the rollout, one turn of policy text): the action is the complete search or
  answer block that *ends first*; text after it is ignored. An empty query is invalid; a query
  longer than ``max_query_chars`` is cut (the characters cut are returned). With
  ``allow_search=False`` (the last turn, the no-search baseline) search tags are plain text. No
  complete block, an unclosed tag or a stray closing tag: invalid.
* :func:`extract_answer` (rewards and eval, a whole response): the stripped content of the *last*
  complete answer block; None when there is none, ``""`` for an empty answer. For a response whose
  turns each end at their first complete action, both give the same answer (property-tested).

Format grammar (:func:`validate_format`). With ``WS`` = optional whitespace and
``require_think=True`` (the Search-R1 template asks for reasoning "first every time you get new
information")::

    response := WS ( THINK WS SEARCH WS INFO WS )* THINK WS ANSWER WS

With ``require_think=False`` each ``THINK WS`` is optional. The content of an information block is
opaque (passages may hold tags) and ends at the first ``</information>``; inside the other blocks no
tag may appear before the block's own closing tag. Text outside blocks (the corrective message
included: an invalid action happened) or any block after the answer makes a response ill-formed, as
in Search-R1's validator.

Provenance (``segments``). Text alone cannot tell policy text from injected text (a policy may write
its own ``<information>``; the corrective message contains ``<answer> and </answer>``). Callers
that know provenance pass the response as ``(text, sampled)`` pieces: the answer is then taken from
policy-written text only (:func:`policy_answer`) and the validator requires information blocks to
be injected and the others policy-written. The rollout engine records them as it goes
(``Trajectory.segments``); :func:`segments_from_mask` rebuilds them from ids and the provenance mask.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

SEARCH_STOP = "</search>"
ANSWER_STOP = "</answer>"
OBS_OPEN = "\n\n<information>"
OBS_CLOSE = "</information>\n\n"
INVALID_ACTION_TEXT = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer between "
    "<answer> and </answer>. Let me try again.\n"
)
ACTION_TAGS = ("search", "answer")
TAG_NAMES = ("think", "search", "information", "answer")

_TAG = re.compile(r"<(/?)(think|search|information|answer)>")

Segment = tuple[str, bool]  # (text, sampled by the policy)


# -- the wire format -----------------------------------------------------------------------------
def information(body: str) -> str:
    """The full observation for a body: ``\\n\\n<information>{body}</information>\\n\\n``."""
    return f"{OBS_OPEN}{body}{OBS_CLOSE}"


def failure_body(error: BaseException | str) -> str:
    """Body of the observation for a failed search; the policy reads why it failed."""
    return f"search failed: {error}"


# -- complete blocks, actions, answers --------------------------------------------------------------
def complete_blocks(text: str, tag: str) -> Iterator[tuple[int, int, str]]:
    """Every complete ``<tag>…</tag>`` block (module docstring), in order: (start, end, content).

    ``start`` is the index of the opening ``<``, ``end`` the index just after the closing tag.
    """
    opener, closer = f"<{tag}>", f"</{tag}>"
    prev = 0  # end of the previous closing tag: an opener before it belongs to that closer
    close = text.find(closer)
    while close != -1:
        start = text.rfind(opener, prev, close)
        if start != -1:
            yield start, close + len(closer), text[start + len(opener):close]
        prev = close + len(closer)
        close = text.find(closer, prev)


@dataclass(frozen=True)
class Action:
    kind: str                 # "search" | "answer" | "invalid"
    content: str = ""         # stripped query or answer text ("" when invalid)
    query_chars_cut: int = 0  # characters removed from an over-long query
    reason: str = ""          # why an action is invalid (for logs)


def parse_action(text: str, allow_search: bool = True, max_query_chars: int = 512) -> Action:
    """The first complete action of a turn's policy text (module docstring)."""
    found = []
    for tag in ACTION_TAGS:
        if tag == "search" and not allow_search:
            continue
        first = next(complete_blocks(text, tag), None)
        if first is not None:
            found.append((first[1], tag, first[2]))
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


def extract_answer(response: str) -> str | None:
    """The stripped content of the last complete ``<answer>`` block; None when there is none.

    ``"<answer>a<answer>b</answer>"`` gives ``"b"``, ``"<answer>a</answer>b</answer>"`` gives
    ``"a"``, an unclosed trailing ``<answer>`` is ignored, an empty answer gives ``""``.
    """
    last = None
    for last in complete_blocks(response, "answer"):
        pass
    return None if last is None else last[2].strip()


@dataclass(frozen=True)
class FormatCheck:
    ok: bool
    reason: str  # "ok" when well-formed, otherwise what broke and where

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class Block:
    name: str   # one of TAG_NAMES
    start: int  # index of "<" of the opening tag
    end: int    # index just after the closing tag
    content: str


def strip_information(response: str) -> str:
    """The response with every ``<information>…</information>`` block removed (an unclosed one runs to the end)."""
    out, pos = [], 0
    while True:
        start = response.find("<information>", pos)
        if start < 0:
            out.append(response[pos:])
            return "".join(out)
        out.append(response[pos:start])
        end = response.find("</information>", start)
        if end < 0:
            return "".join(out)
        pos = end + len("</information>")


def _snippet(text: str, at: int, width: int = 40) -> str:
    return repr(text[at:at + width])


def parse_blocks(response: str) -> tuple[list[Block], str | None]:
    """Split a response into blocks. Returns (blocks, error); error is None when the tags are sound.

    Checks balance and nesting and that only whitespace lies between blocks; the
    order of blocks is checked by ``validate_format``.
    """
    blocks: list[Block] = []
    pos = 0
    while True:
        m = _TAG.search(response, pos)
        gap_end = m.start() if m else len(response)
        gap = response[pos:gap_end]
        if gap.strip():
            at = pos + (len(gap) - len(gap.lstrip()))
            return blocks, f"text outside any block at char {at}: {_snippet(response, at)}"
        if m is None:
            return blocks, None
        name = m.group(2)
        if m.group(1):
            return blocks, f"</{name}> at char {m.start()} closes a block that was never opened"
        close = f"</{name}>"
        if name == "information":
            end = response.find(close, m.end())
            if end < 0:
                return blocks, f"<information> at char {m.start()} is never closed"
        else:
            nxt = _TAG.search(response, m.end())
            if nxt is None:
                return blocks, f"<{name}> at char {m.start()} is never closed"
            if nxt.group(0) != close:
                return blocks, (f"<{name}> at char {m.start()} contains {nxt.group(0)} "
                                f"(at char {nxt.start()}) before its {close}")
            end = nxt.start()
        blocks.append(Block(name, m.start(), end + len(close), response[m.end():end]))
        pos = end + len(close)


# state -> {block name -> next state}; "answer" is the only accepting state.
_STRICT = {
    "start": {"think": "think"},
    "think": {"search": "search", "answer": "answer"},
    "search": {"information": "information"},
    "information": {"think": "think"},
    "answer": {},
}
_LOOSE = {
    "start": {"think": "think", "search": "search", "answer": "answer"},
    "think": {"search": "search", "answer": "answer"},
    "search": {"information": "information"},
    "information": {"think": "think", "search": "search", "answer": "answer"},
    "answer": {},
}


def _merge(segments: Sequence[Segment]) -> list[tuple[int, int, bool]]:
    """(start, end, sampled) character spans, adjacent pieces of the same provenance merged."""
    spans: list[tuple[int, int, bool]] = []
    pos = 0
    for text, sampled in segments:
        if not text:
            continue
        if spans and spans[-1][2] == bool(sampled):
            spans[-1] = (spans[-1][0], pos + len(text), bool(sampled))
        else:
            spans.append((pos, pos + len(text), bool(sampled)))
        pos += len(text)
    return spans


def check_segments(response: str, segments: Sequence[Segment]) -> None:
    """Raise ValueError when the segments do not concatenate to the response."""
    joined = "".join(text for text, _ in segments)
    if joined != response:
        raise ValueError(
            "segments do not add up to the response (first difference at char "
            f"{next((i for i, (a, b) in enumerate(zip(joined, response)) if a != b), min(len(joined), len(response)))}); "
            "pass the (text, sampled) pieces the response was built from, in order."
        )


def _provenance_error(blocks: list[Block], spans: list[tuple[int, int, bool]]) -> str | None:
    for b in blocks:
        want = b.name != "information"  # information is injected, the rest is sampled
        inside = any(s <= b.start and b.end <= e and sampled == want for s, e, sampled in spans)
        if not inside:
            who = "injected by the environment" if not want else "written by the policy"
            return f"<{b.name}> block at char {b.start} is not entirely {who}"
    return None


def validate_format(
    response: str,
    *,
    segments: Sequence[Segment] | None = None,
    require_think: bool = True,
) -> FormatCheck:
    """Check the response against the grammar in the module docstring.

    segments: optional ``(text, sampled)`` pieces of the response; when given, the
    information blocks must be injected and the other blocks policy-written.
    """
    blocks, error = parse_blocks(response)
    if error is not None:
        return FormatCheck(False, error)
    table = _STRICT if require_think else _LOOSE
    state = "start"
    for b in blocks:
        nxt = table[state].get(b.name)
        if nxt is None:
            if state == "answer":
                return FormatCheck(False, f"<{b.name}> at char {b.start} comes after the final answer")
            expected = " or ".join(f"<{n}>" for n in table[state])
            return FormatCheck(False, f"<{b.name}> at char {b.start} where {expected} was expected")
        state = nxt
    if state != "answer":
        return FormatCheck(False, "the response does not end with an <answer> block")
    if segments is not None:
        check_segments(response, segments)
        error = _provenance_error(blocks, _merge(segments))
        if error is not None:
            return FormatCheck(False, error)
    return FormatCheck(True, "ok")


def policy_answer(response: str, segments: Sequence[Segment] | None = None) -> str | None:
    """The final answer the *policy* gave.

    With segments: the last complete answer inside policy-written text (an answer
    never spans injected text). Without: the last complete answer of the response
    once information blocks are removed (the corrective message, if the rollout
    injects one, is then indistinguishable from policy text — pass segments).
    """
    if segments is None:
        return extract_answer(strip_information(response))
    check_segments(response, segments)
    for start, end, sampled in reversed(_merge(segments)):
        if sampled:
            answer = extract_answer(response[start:end])
            if answer is not None:
                return answer
    return None


def segments_from_mask(
    ids: Sequence[int], mask: Sequence[int], decode: Callable[[list[int]], str]
) -> list[Segment]:
    """Group token ids into runs of equal provenance and decode each run.

    ids, mask: (R,) response token ids and provenance (1 = sampled). ``decode`` maps
    a list of ids to text (e.g. ``lambda t: tok.decode(t, skip_special_tokens=True)``).
    """
    if len(ids) != len(mask):
        raise ValueError(f"ids and mask differ in length ({len(ids)} vs {len(mask)}); pass the response's own mask.")
    segments: list[Segment] = []
    start = 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or bool(mask[i]) != bool(mask[start]):
            segments.append((decode(list(ids[start:i])), bool(mask[start])))
            start = i
    return segments
