"""Invented names for SearchWorld, drawn from a small closed vocabulary.

Every name is built from a handful of syllables so that a tokenizer trained on
the world's text splits it into a few tokens, and a tiny model can copy it.
Each entity kind has its own suffixes, so a city can never be mistaken for a
country or a person, and no name is a substring of another kind's name.
All functions take an explicit ``random.Random``; nothing touches global RNG.
"""
from __future__ import annotations

import random

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
VOWELS = ["a", "e", "i", "o", "u"]
CODAS = ["", "", "n", "r", "l", "s", "k"]

CITY_SUFFIXES = ["mor", "holm", "dale", "port", "wick"]
COUNTRY_SUFFIXES = ["ania", "eria", "ovia"]
ORG_KINDS = ["Guild", "Company", "Society", "Institute", "Works"]
OCCUPATIONS = ["painter", "engineer", "poet", "sailor", "doctor", "farmer", "teacher", "merchant"]
WORK_ADJECTIVES = ["Silver", "Hidden", "Broken", "Golden", "Quiet", "Distant", "Burning", "Frozen",
                   "Little", "Last", "Red", "Green", "Iron", "Glass", "Wild", "Pale"]
WORK_NOUNS = ["Lantern", "River", "Garden", "Tower", "Harbor", "Mirror", "Forest", "Bridge",
              "Letter", "Song", "Road", "Island", "Winter", "Crown", "Door", "Field"]


def syllable(rng: random.Random) -> str:
    return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)


def word(rng: random.Random, n_syllables: int) -> str:
    return "".join(syllable(rng) for _ in range(n_syllables)).capitalize()


def _unique(make, n: int, taken: set[str], rng: random.Random, what: str,
            generic: frozenset[str] = frozenset()) -> list[str]:
    """``n`` new names whose distinctive words (all but ``generic``) appear in no
    earlier name; ``taken`` (lower-cased words and full names) is updated."""
    out: list[str] = []
    for _ in range(200 * max(n, 1)):
        if len(out) == n:
            return out
        name = make(rng)
        key = name.lower()
        words = [w for w in key.split() if w not in generic]
        if key not in taken and len(set(words)) == len(words) and not any(w in taken for w in words):
            taken.add(key)
            taken.update(words)
            out.append(name)
    raise ValueError(f"could not invent {n} distinct {what} names from the closed vocabulary; "
                     f"lower the number of {what} in WorldConfig")


def country_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    return _unique(lambda r: word(r, 1) + r.choice(COUNTRY_SUFFIXES), n, taken, rng, "countries")


def city_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    return _unique(lambda r: word(r, 1) + r.choice(CITY_SUFFIXES), n, taken, rng, "cities")


def org_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    return _unique(lambda r: f"{word(r, 2)} {r.choice(ORG_KINDS)}", n, taken, rng, "organisations",
                   frozenset(k.lower() for k in ORG_KINDS))


def person_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    return _unique(lambda r: f"{word(r, r.choice([1, 2]))} {word(r, 2)}", n, taken, rng, "people")


def work_titles(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    def make(r: random.Random) -> str:
        return f"The {r.choice(WORK_ADJECTIVES)} {r.choice(WORK_NOUNS)}"

    generic = frozenset(w.lower() for w in ["The", *WORK_ADJECTIVES, *WORK_NOUNS])
    return _unique(make, n, taken, rng, "works", generic)
