"""Parsing a response: the final answer, the format grammar, and who wrote what.

A *response* is everything after the prompt: policy-written blocks plus the
``<information>`` observations (and, after an invalid action, the corrective
message) that the environment injected. It is parsed on its own, never with the
prompt.

Tags
----
The four block tags are ``<think>``, ``<search>``, ``<information>`` and
``<answer>``, each closed by its ``</name>`` twin. The content of an
``<information>`` block is opaque (retrieved passages may contain anything, tags
included) and ends at the first ``</information>``. Inside the other three blocks
no tag may appear before the block's own closing tag.

Format grammar (``validate_format``)
------------------------------------
With ``WS`` = optional whitespace and ``require_think=True`` (the default; the
Search-R1 template tells the model to reason "first every time you get new
information")::

    response := WS ( THINK WS SEARCH WS INFO WS )* THINK WS ANSWER WS

so every search is preceded by a think block and answered by exactly one
information block, and the response ends with exactly one answer. With
``require_think=False`` each ``THINK WS`` above becomes optional. Anything that is
not whitespace between or after blocks makes the response ill-formed, and so does
any block after the answer.

The corrective message. After an invalid action the rollout injects a plain-text
message ("My previous action is invalid. ..."), not wrapped in any block. The
validator treats it as text outside the blocks, so a response containing it is
ill-formed: an invalid action happened, which is what the format reward should
penalize. (Search-R1's own validator behaves the same way.)

Provenance (``segments``)
-------------------------
Text alone cannot tell policy text from injected text: a policy may write its own
``<information>`` block, and the corrective message itself contains the literal
``<answer> and </answer>``. Callers that know provenance pass ``segments``: the
response as consecutive ``(text, sampled)`` pieces (``sampled`` True = written by
the policy). Then the answer is taken from policy-written text only, and the
validator also requires information blocks to be injected and the other blocks
to be policy-written. ``segments_from_mask`` builds them from token ids and the
rollout's provenance mask.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TAG_NAMES = ("think", "search", "information", "answer")
_TAG = re.compile(r"<(/?)(think|search|information|answer)>")

Segment = tuple[str, bool]  # (text, sampled by the policy)


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


def extract_answer(response: str) -> str | None:
    """The stripped content of the last complete ``<answer>…</answer>``; None when there is none.

    An ``<answer>`` is paired with the first ``</answer>`` after it; the answer is
    the last ``<answer>`` that has one. So ``"<answer>a<answer>b</answer>"`` gives
    ``"b"``, ``"<answer>a</answer>b</answer>"`` gives ``"a"``, an unclosed trailing
    ``<answer>`` is ignored, and an empty answer gives ``""``.
    """
    last_close = response.rfind("</answer>")
    if last_close < 0:
        return None
    open_ = response.rfind("<answer>", 0, last_close)
    if open_ < 0:
        return None
    start = open_ + len("<answer>")
    return response[start:response.find("</answer>", start)].strip()


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
