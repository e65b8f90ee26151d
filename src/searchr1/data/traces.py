"""Protocol-format trajectories for pretraining (random policy) and SFT (scripted teacher).

Both write exactly what the rollout produces: the policy's blocks, and after each
``</search>`` the observation the environment injects
(``searchr1.protocol.information`` over the real retrieval results).

* ``random_policy_response`` — teaches the *format*, not the strategy: it searches
  (``min_searches``-``max_searches`` times) with a query drawn uniformly from the
  candidate queries it can see — every span of up to 3 words of the question, every
  capitalised mention of the question and, after a first search, every mention it
  read — reads the real results, and answers with a random candidate span (a
  capitalised mention in what it read, or in the question when it did not search; a
  mention the question already contains is never picked after a search). Given the
  world's entity kinds (``kinds``) it keeps only mentions of the *type* the question asks
  for (a city for "Where was X born?", an organisation for "Which organisation ...", a
  country for "In which country ...") when it read any: the prior every pretrained LM
  brings (it knows "where" asks for a place), not knowledge of the answer. It knows
  nothing of the gold answer or the gold queries: which mention it picks is chance.
  With ``reader=True`` it also *reads* like a pretrained LM: when the passages it
  retrieved include every evidence passage of the question (``metadata["evidence_ids"]``)
  it answers what they say (the gold answer); otherwise it guesses as above. What and
  when to search stays random: reading comprehension is the skill a pretrained LLM
  brings, the search strategy is what RL must learn.
  With ``follow_leads = p`` a search after the first one follows a lead with probability p:
  a mention of the best-ranked passage it just read (not in the question), any one alike;
  otherwise any candidate query.
  With ``restate=True`` every think restates the question (``RESTATE``) instead of a
  generic phrase: the same content, placed next to the search or answer that needs it; with
  ``reader=True`` too, a think after reading also notes the sentence read that bears on the
  question (``read_fact``: "X was born in C." on the way to "In which country was X born?").
* ``teacher_response`` — a scripted teacher that searches the gold hop queries in
  order and answers with the gold answer: cold-start SFT data for real models.
"""
from __future__ import annotations

import random
import re

from searchr1.data.prompts import passages_body
from searchr1.data.qa import QAExample
from searchr1.protocol import information
from searchr1.search.base import Retriever

THINKS = ("I need more information.", "Let me search.", "I should look this up.", "I can answer now.",
          "The passages may help.")
RESTATE = ("The question is: {q}", "I need to answer: {q}", "Still to answer: {q}")
"""Thinks that restate the question (``restate=True``): what an LLM's reasoning does before it
acts, and what lets a tiny model condition a query or an answer on the question's relation
without attending back across the retrieved text."""
_MENTION = re.compile(r"[A-Z][a-z]+(?: [A-Z][a-z]+)*")
_NOT_NAMES = ("Doc", "Title", "The", "Where", "Which", "Who", "In", "Notes", "Readers")
"""Capitalised words that are protocol labels, question words or distractor-title words, not names."""
ANSWER_KIND = {"birthplace": "city", "employer": "organisation", "author": "person",
               "birth_country": "country", "employer_city": "city", "author_birthplace": "city"}
"""What kind of entity each SearchWorld relation's question asks for (the answer-type prior)."""


def _search_block(think: str, query: str) -> str:
    return f"<think> {think} </think>\n<search> {query} </search>"


def _answer_block(think: str, answer: str) -> str:
    return f"<think> {think} </think>\n<answer> {answer} </answer>"


def random_span(words: list[str], rng: random.Random, max_len: int = 3) -> str:
    n = rng.randint(1, min(max_len, len(words)))
    i = rng.randrange(len(words) - n + 1)
    return " ".join(words[i:i + n])


def query_candidates(question: str, read: list[str]) -> list[str]:
    """What the random policy may search: distinct question spans (1-3 words), question mentions
    and mentions in what it has read so far (first-seen order)."""
    words = question.rstrip("?").split()
    seen: dict[str, None] = {}
    for n in range(1, min(3, len(words)) + 1):
        for i in range(len(words) - n + 1):
            seen.setdefault(" ".join(words[i:i + n]), None)
    for m in candidate_mentions(question) + answer_candidates(" ".join(read), question):
        seen.setdefault(m, None)
    return list(seen)


def candidate_mentions(text: str) -> list[str]:
    """Capitalised word runs (entity-like mentions), without the protocol's ``Doc``/``Title`` labels."""
    out = []
    for m in _MENTION.findall(text):
        words = [w for w in m.split() if w not in _NOT_NAMES]
        if words:
            out.append(" ".join(words))
    return out


def answer_candidates(read: str, question: str) -> list[str]:
    """Distinct mentions in ``read`` that the question does not already contain (first-seen order).

    This is the one prior the random policy has: an answer is some entity it read that is not
    the question's own entity. Which one is pure chance.
    """
    seen: dict[str, None] = {}
    for m in candidate_mentions(read):
        if m not in question:
            seen.setdefault(m, None)
    return list(seen)


def entity_kinds(world) -> dict[str, str]:
    """Name -> entity kind of every entity of a SearchWorld (the ``kinds`` the prior reads)."""
    return {e.name: e.kind for e in world.entities.values()}


def typed(pool: list[str], q: QAExample, kinds: dict[str, str] | None) -> list[str]:
    """The mentions of ``pool`` whose kind (``kinds``: name -> entity kind) is the one the
    question asks for; ``pool`` itself when there are none or no kinds are given."""
    want = ANSWER_KIND.get(q.metadata.get("relation", ""))
    if not kinds or want is None:
        return pool
    return [m for m in pool if kinds.get(m) == want] or pool


def supported(q: QAExample, read_ids: set[str]) -> bool:
    """True when the passages read (``read_ids``) include every evidence passage of ``q``:
    the answer can be read off them. Questions without ``evidence_ids`` are never supported."""
    evidence = q.metadata.get("evidence_ids") or []
    return bool(evidence) and set(evidence) <= read_ids


def read_fact(q: QAExample, docs: dict[str, str]) -> str:
    """The sentence of the passages read (``docs``: id -> text) that bears on the question's next
    step: the one naming the answer when every evidence passage was read, else the one naming the
    bridge in the first hop's passage; "" when nothing read bears on it. A reader's note, written
    from what it read: it never names an entity the passages read do not state."""
    evidence = q.metadata.get("evidence_ids") or []
    if not evidence or evidence[0] not in docs:
        return ""
    if set(evidence) <= set(docs):
        doc, target = docs[evidence[-1]], q.golden_answers[0]
    elif q.metadata.get("bridge"):
        doc, target = docs[evidence[0]], q.metadata["bridge"]
    else:
        return ""
    for sentence in re.split(r"(?<=\.) ", doc):
        if target in sentence:
            return sentence.strip()
    return ""


def random_policy_response(q: QAExample, retriever: Retriever, rng: random.Random, topk: int = 3,
                           min_searches: int = 0, max_searches: int = 2,
                           kinds: dict[str, str] | None = None, reader: bool = False,
                           restate: bool = False, follow_leads: float = 0.0) -> str:
    words = q.question.rstrip("?").split()

    parts, read, top, docs = [], [], "", {}  # docs: id -> text of every passage read

    def think() -> str:
        if not restate:
            return rng.choice(THINKS)
        fact = read_fact(q, docs) if reader else ""
        return rng.choice(RESTATE).format(q=q.question) + (f" I read: {fact}" if fact else "")

    for _ in range(rng.randint(min_searches, max_searches)):
        leads = answer_candidates(top, q.question) or answer_candidates(" ".join(read), q.question)
        query = rng.choice(leads if leads and rng.random() < follow_leads else query_candidates(q.question, read))
        hits = retriever.search([query], topk)[0]
        parts.append(_search_block(think(), query) + information(passages_body(hits)))
        read.append(passages_body(hits))
        docs.update((h.doc.id, h.doc.text) for h in hits)
        top = hits[0].doc.contents if hits else ""
    if reader and supported(q, set(docs)):
        answer = q.golden_answers[0]
    else:
        pool = typed(answer_candidates(" ".join(read), q.question), q, kinds) or candidate_mentions(q.question) or words
        answer = rng.choice(pool)
    parts.append(_answer_block(think(), answer))
    return "".join(parts)


def teacher_segments(q: QAExample, retriever: Retriever, topk: int = 3) -> list[tuple[str, bool]]:
    """The scripted teacher's response as ``(text, written by the policy)`` pieces: it searches
    ``metadata["hop_queries"]`` in order (the observations are the real results, injected), then answers
    the gold answer."""
    hops = q.metadata.get("hop_queries")
    if not hops:
        raise ValueError(f"question {q.id} has no metadata['hop_queries']; the scripted teacher needs "
                         "SearchWorld questions (searchr1.data.world)")
    parts: list[tuple[str, bool]] = []
    for i, query in enumerate(hops):
        think = "I need to find " + ("the first fact." if i == 0 else f"more about {query}.")
        hits = retriever.search([query], topk)[0]
        parts += [(_search_block(think, query), True), (information(passages_body(hits)), False)]
    parts.append((_answer_block("I can answer now.", q.golden_answers[0]), True))
    return parts


def teacher_response(q: QAExample, retriever: Retriever, topk: int = 3) -> str:
    """:func:`teacher_segments` as one text."""
    return "".join(text for text, _ in teacher_segments(q, retriever, topk))


def pick_teacher_questions(questions: list[QAExample], n: int, seed: int) -> list[QAExample]:
    """``n`` questions with teacher metadata, single- and two-hop alternating, in a seeded order."""
    usable = [q for q in questions if q.metadata.get("hop_queries")]
    random.Random(seed).shuffle(usable)
    by_type = [[q for q in usable if q.metadata.get("type") == t] for t in ("single-hop", "two-hop")]
    return [q for pair in zip(*by_type) for q in pair][:n] or usable[:n]
