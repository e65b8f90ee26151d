"""Observation text injected after a search, in Search-R1's wire format.

The body is :func:`searchr1.data.prompts.render_passages` (``Doc {i}(Title: {title}) {text}``,
one per line) stripped, as Search-R1 strips it, so the observation reads
``\\n\\n<information>Doc 1(Title: "T") text\\nDoc 2(...) ...</information>\\n\\n``.
"""
from __future__ import annotations

from collections.abc import Sequence

from searchr1.data.prompts import render_passages
from searchr1.search.base import Hit

OBS_OPEN = "\n\n<information>"
OBS_CLOSE = "</information>\n\n"


def passages_body(hits: Sequence[Hit]) -> str:
    """The rendered hits, best first, without the trailing newline."""
    return render_passages(hits).strip()


def information(body: str) -> str:
    """The full observation for a body: ``\\n\\n<information>{body}</information>\\n\\n``."""
    return f"{OBS_OPEN}{body}{OBS_CLOSE}"


def failure_body(error: BaseException) -> str:
    """Body of the observation for a failed search; the policy reads why it failed."""
    return f"search failed: {error}"
