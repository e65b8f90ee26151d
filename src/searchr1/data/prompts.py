"""Prompt templates: Search-R1's training template and the paper's baselines.

``SEARCH_R1_TEMPLATE`` is Search-R1's template verbatim, typos included ("as many
times as your want"), so results stay comparable. Every template holds one
``{question}`` slot (the ``rag`` template also ``{passages}``); the question is
stripped and gets a "?" when it does not end with one, as Search-R1's data
preparation does.

A prompt is sent as ONE user message through the tokenizer's chat template when
the tokenizer has one (``apply_chat_template``), raw otherwise.

Passages are rendered as Search-R1 renders retrieval results::

    Doc {i}(Title: {title}) {text}\\n      (i from 1, one passage per line)

where, exactly as Search-R1 does, ``title`` is the first line of the document's
``contents`` wire form (``'"Title"\\ntext'``), so the title keeps its double
quotes — ``Doc 1(Title: "Paris") Paris is ...`` — and ``text`` is the rest of
``contents`` (newlines inside a passage are kept). The rendered string ends with a
newline.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

SEARCH_R1_TEMPLATE = (
    "Answer the given question. "
    "You must conduct reasoning inside <think> and </think> first every time you get new information. "
    "After reasoning, if you find you lack some knowledge, you can call a search engine by "
    "<search> query </search> and it will return the top searched results between <information> and "
    "</information>. "
    "You can search as many times as your want. "
    "If you find no further external knowledge needed, you can directly provide the answer inside "
    "<answer> and </answer>, without detailed illustrations. For example, <answer> Beijing </answer>. "
    "Question: {question}\n"
)

R1_TEMPLATE = (
    "Answer the given question. "
    "You must conduct reasoning inside <think> and </think> first. "
    "After reasoning, provide the answer inside <answer> and </answer>, without detailed illustrations. "
    "For example, <answer> Beijing </answer>. "
    "Question: {question}\n"
)

DIRECT_TEMPLATE = (
    "Answer the given question directly. "
    "Give only the answer inside <answer> and </answer>, without any explanation. "
    "For example, <answer> Beijing </answer>. "
    "Question: {question}\n"
)

COT_TEMPLATE = (
    "Answer the given question. "
    "Think step by step, then give the final answer inside <answer> and </answer>, "
    "without detailed illustrations. For example, <answer> Beijing </answer>. "
    "Question: {question}\n"
)

RAG_TEMPLATE = (
    "Answer the given question using the documents below. "
    "Give only the answer inside <answer> and </answer>, without detailed illustrations. "
    "For example, <answer> Beijing </answer>.\n"
    "Documents:\n{passages}"
    "Question: {question}\n"
)

_SLOT = re.compile(r"\{(question|passages)\}")

TEMPLATES: dict[str, str] = {
    "search-r1": SEARCH_R1_TEMPLATE,
    "r1": R1_TEMPLATE,
    "direct": DIRECT_TEMPLATE,
    "cot": COT_TEMPLATE,
    "rag": RAG_TEMPLATE,
}


def get_template(template: str) -> str:
    """A template by name, or ``template`` itself when it is a raw template with a ``{question}`` slot."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{question}" in template:
        return template
    raise ValueError(
        f"unknown template {template!r}; use one of {', '.join(TEMPLATES)} "
        "or pass a template string containing '{question}'."
    )


def normalize_question(question: str) -> str:
    """Strip the question and append "?" when it does not end with one (Search-R1's preparation)."""
    if not isinstance(question, str):
        raise TypeError(f"question must be a string, got {type(question).__name__}.")
    question = question.strip()
    if not question:
        raise ValueError("question is empty; every QA example needs question text.")
    return question if question.endswith("?") else question + "?"


def _doc_contents(doc: Any) -> str:
    """Search-R1's ``contents`` wire form of a Document, Hit, or dict."""
    if hasattr(doc, "doc"):  # Hit
        doc = doc.doc
    if hasattr(doc, "contents"):  # Document
        return doc.contents
    if isinstance(doc, Mapping):
        if "document" in doc:  # retrieval server reply: {"document": {...}, "score": ...}
            return _doc_contents(doc["document"])
        if "contents" in doc:
            return str(doc["contents"])
        if "title" in doc and "text" in doc:
            return f'"{doc["title"]}"\n{doc["text"]}'
    raise TypeError(
        f"cannot render a passage from {type(doc).__name__}; pass Documents, Hits, or dicts with "
        "'contents' (or 'title' and 'text')."
    )


def render_passages(docs_or_hits: Iterable[Any]) -> str:
    """``Doc {i}(Title: {title}) {text}`` one per line, i from 1 (see module docstring)."""
    lines = []
    for i, doc in enumerate(docs_or_hits, start=1):
        title, _, text = _doc_contents(doc).partition("\n")
        lines.append(f"Doc {i}(Title: {title}) {text}\n")
    return "".join(lines)


def passages_body(hits: Iterable[Any]) -> str:
    """Body of a search observation: the rendered hits, best first, stripped as Search-R1 strips it."""
    return render_passages(hits).strip()


def make_prompt(question: str, template: str = "search-r1", passages: Iterable[Any] | str | None = None) -> str:
    """The prompt text for one question.

    passages: only for templates with a ``{passages}`` slot ("rag"): Documents,
    Hits, dicts, or an already rendered string.
    """
    text = get_template(template)
    question = normalize_question(question)
    wants_passages = "{passages}" in text
    if wants_passages and passages is None:
        raise ValueError(f"template {template!r} needs passages; retrieve them and pass passages=[...].")
    if not wants_passages and passages is not None:
        raise ValueError(f"template {template!r} has no place for passages; use template='rag' or drop passages.")
    values = {"question": question}
    if wants_passages:
        values["passages"] = passages if isinstance(passages, str) else render_passages(passages)
    # one pass, so braces inside the question or the passages are never re-expanded
    return _SLOT.sub(lambda m: values[m.group(1)], text)


def apply_chat_template(tokenizer: Any, prompt: str) -> str:
    """The prompt as one user message in the tokenizer's chat format (generation prompt added).

    Tokenizers without a chat template get the raw prompt.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
    return prompt


def template_hash(name: str) -> str:
    """Short SHA-256 of a template's text (16 hex chars), for evaluation manifests."""
    return hashlib.sha256(get_template(name).encode("utf-8")).hexdigest()[:16]
