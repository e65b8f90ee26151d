"""SearchWorld: a generated world of fictional entities whose facts live only in its corpus.

No pretrained model can know these facts, so the only way to answer is to search.
The world is deterministic from ``WorldConfig.seed`` (one ``random.Random``; no
global RNG) and built for tiny models: short encyclopedic passages, a closed
vocabulary, names of a few syllables.

Entities: countries, cities (each in a country), organisations (each based in a
city), people (born in a city, working for an organisation based elsewhere) and
works (written by a person). Passages: one per entity, plus distractors that
mention an entity without stating any fact a question asks about, so naive
retrieval is imperfect.

Question relations (``metadata["relation"]``) and types (``metadata["type"]``):

=================  ==========  ==============================================  =================
relation           type        question                                        evidence
=================  ==========  ==============================================  =================
birthplace         single-hop  Where was X born?                               person
employer           single-hop  Which organisation does X work for?             person
author             single-hop  Who wrote W?                                    work
birth_country      two-hop     In which country was X born?                    person, city
employer_city      two-hop     In which city is the organisation X works...    person, organisation
author_birthplace  two-hop     Where was the author of W born?                 work, person
=================  ==========  ==============================================  =================

``metadata`` also records ``evidence_ids`` (gold passage ids, in hop order),
``subject``, and for two-hop questions the ``bridge`` entity and the
``hop_queries`` a perfect searcher would issue.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from searchr1.data import world_names as names
from searchr1.data.qa import QAExample
from searchr1.search.base import Document

RELATIONS = ("birthplace", "employer", "author", "birth_country", "employer_city", "author_birthplace")
TWO_HOP = frozenset({"birth_country", "employer_city", "author_birthplace"})
SPLITS = ("train", "dev", "test")


@dataclass
class WorldConfig:
    seed: int = 0
    """Everything (names, facts, passages, splits) is a function of this seed."""
    countries: int = 6
    """Number of countries."""
    cities: int = 18
    """Number of cities (each in one country; needs cities >= countries)."""
    organisations: int = 12
    """Number of organisations (each based in one city)."""
    people: int = 300
    """Number of people: the main question subjects."""
    works: int = 60
    """Number of written works (subjects of the author questions)."""
    distractors_per_entity: int = 1
    """Distractor passages per person and per work (mention it, answer nothing)."""
    relations: tuple[str, ...] = RELATIONS
    """Which question relations to generate (see the module docstring)."""
    dev_frac: float = 0.1
    """Share of questions in the dev split."""
    test_frac: float = 0.1
    """Share of questions in the test split."""
    heldout_frac: float = 0.0
    """Share of subjects (people, works) whose questions all go to a ``heldout`` split and
    never to train/dev/test: a harder generalisation split on unseen subjects."""

    def __post_init__(self):
        self.relations = tuple(self.relations)
        unknown = [r for r in self.relations if r not in RELATIONS]
        if unknown or not self.relations:
            raise ValueError(f"unknown or empty relations {unknown or '()'}; choose from {RELATIONS}")
        for name in ("countries", "cities", "organisations", "people"):
            if getattr(self, name) < 2:
                raise ValueError(f"WorldConfig.{name} must be >= 2 (got {getattr(self, name)}); "
                                 "questions need at least two candidates of each kind")
        if self.cities < 3:
            raise ValueError(f"WorldConfig.cities must be >= 3 (got {self.cities}): distractors need a city "
                             "that is neither a person's birthplace nor their employer's city")
        if self.cities < self.countries:
            raise ValueError(f"cities ({self.cities}) must be >= countries ({self.countries}) so every "
                             "country has a city; raise cities or lower countries")
        if self.works < 0 or self.distractors_per_entity < 0:
            raise ValueError("works and distractors_per_entity must be >= 0")
        if self.works == 0 and any(r.startswith("author") for r in self.relations):
            raise ValueError("author relations need works > 0; set works or drop those relations")
        for name in ("dev_frac", "test_frac", "heldout_frac"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"WorldConfig.{name} must be in [0, 1) (got {getattr(self, name)})")
        if self.dev_frac + self.test_frac >= 1.0:
            raise ValueError("dev_frac + test_frac must leave questions for training (< 1)")


@dataclass
class Entity:
    id: str
    kind: str  # "country" | "city" | "organisation" | "person" | "work"
    name: str
    facts: dict = field(default_factory=dict)  # relation -> entity id, or literal (year, occupation)

    @property
    def aliases(self) -> list[str]:
        """Accepted answer strings; the canonical name first."""
        if self.kind == "country":
            return [self.name, f"Republic of {self.name}"]
        if self.kind == "city":
            return [self.name, f"{self.name} City"]
        if self.kind == "organisation":
            return [self.name, self.name.rsplit(" ", 1)[0]]
        return [self.name]


@dataclass
class World:
    config: WorldConfig
    entities: dict[str, Entity]
    documents: list[Document]
    questions: list[QAExample]
    splits: dict[str, list[QAExample]]

    def entity(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind == kind]


def _make_entities(cfg: WorldConfig, rng: random.Random) -> dict[str, Entity]:
    taken: set[str] = set()
    ents: dict[str, Entity] = {}
    countries = [Entity(f"country-{i:03d}", "country", n) for i, n in
                 enumerate(names.country_names(rng, cfg.countries, taken))]
    cities = [Entity(f"city-{i:03d}", "city", n) for i, n in enumerate(names.city_names(rng, cfg.cities, taken))]
    for i, city in enumerate(cities):  # every country gets a city, the rest at random
        country = countries[i] if i < len(countries) else rng.choice(countries)
        city.facts["country"] = country.id
        if "capital" not in country.facts:
            country.facts["capital"] = city.id
    orgs = [Entity(f"org-{i:03d}", "organisation", n) for i, n in
            enumerate(names.org_names(rng, cfg.organisations, taken))]
    for org in orgs:
        org.facts["city"] = rng.choice(cities).id
        org.facts["founded"] = rng.randint(1700, 1900)
    people = [Entity(f"person-{i:04d}", "person", n) for i, n in
              enumerate(names.person_names(rng, cfg.people, taken))]
    for p in people:
        p.facts["born_in"] = rng.choice(cities).id
        p.facts["year"] = rng.randint(1800, 1990)
        p.facts["occupation"] = rng.choice(names.OCCUPATIONS)
        elsewhere = [o for o in orgs if o.facts["city"] != p.facts["born_in"]] or orgs
        p.facts["works_for"] = rng.choice(elsewhere).id
    works = [Entity(f"work-{i:03d}", "work", n) for i, n in enumerate(names.work_titles(rng, cfg.works, taken))]
    for w in works:
        w.facts["author"] = rng.choice(people).id
        w.facts["year"] = rng.randint(1820, 2000)
    for e in [*countries, *cities, *orgs, *people, *works]:
        ents[e.id] = e
    return ents


def _passage(e: Entity, ents: dict[str, Entity]) -> str:
    f = e.facts
    if e.kind == "country":
        return f"{e.name} is a country. Its capital is {ents[f['capital']].name}."
    if e.kind == "city":
        return f"{e.name} is a city in {ents[f['country']].name}."
    if e.kind == "organisation":
        return f"{e.name} is an organisation based in {ents[f['city']].name}. It was founded in {f['founded']}."
    if e.kind == "person":
        return (f"{e.name} is a {f['occupation']}. {e.name} was born in {ents[f['born_in']].name} in {f['year']}. "
                f"{e.name} works for {ents[f['works_for']].name}.")
    return f"{e.name} is a book by {ents[f['author']].name}, published in {f['year']}."


def _distractor(e: Entity, ents: dict[str, Entity], rng: random.Random) -> tuple[str, str]:
    """(title, text) mentioning ``e`` without stating any fact a question about it asks."""
    cities = [c for c in ents.values() if c.kind == "city"]
    if e.kind == "work":
        author_city = ents[e.facts["author"]].facts["born_in"]
        city = rng.choice([c for c in cities if c.id != author_city] or cities)
        return f"Readers of {e.name}", f"{e.name} was read aloud in {city.name}."
    org = ents[e.facts["works_for"]]
    avoid = {e.facts["born_in"], org.facts["city"]}
    city = rng.choice([c for c in cities if c.id not in avoid])
    others = [o for o in ents.values() if o.kind == "organisation" and o.id != org.id]
    people = [p for p in ents.values() if p.kind == "person" and p.id != e.id]
    text = rng.choice([
        f"{e.name} once visited {city.name}.",
        f"{e.name} wrote a letter to {rng.choice(people).name} from {city.name}.",
        f"{e.name} admired {rng.choice(others).name}.",
    ])
    return f"Notes on {e.name}", text


def _make_documents(cfg: WorldConfig, ents: dict[str, Entity], rng: random.Random) -> list[Document]:
    docs = [Document(e.id, e.name, _passage(e, ents)) for e in ents.values()]
    for e in ents.values():
        if e.kind in ("person", "work"):
            for j in range(cfg.distractors_per_entity):
                title, text = _distractor(e, ents, rng)
                docs.append(Document(f"{e.id}-d{j}", title, text))
    return docs


def _question(rel: str, s: Entity, ents: dict[str, Entity]) -> tuple[str, Entity, list[str], Entity | None, list[str]]:
    """(question, answer entity, evidence ids, bridge entity, hop queries) for subject ``s``."""
    f = s.facts
    if rel == "birthplace":
        return f"Where was {s.name} born?", ents[f["born_in"]], [s.id], None, [s.name]
    if rel == "employer":
        return f"Which organisation does {s.name} work for?", ents[f["works_for"]], [s.id], None, [s.name]
    if rel == "author":
        return f"Who wrote {s.name}?", ents[f["author"]], [s.id], None, [s.name]
    if rel == "birth_country":
        city = ents[f["born_in"]]
        return (f"In which country was {s.name} born?", ents[city.facts["country"]], [s.id, city.id], city,
                [s.name, city.name])
    if rel == "employer_city":
        org = ents[f["works_for"]]
        return (f"In which city is the organisation that {s.name} works for based?", ents[org.facts["city"]],
                [s.id, org.id], org, [s.name, org.name])
    author = ents[f["author"]]
    return (f"Where was the author of {s.name} born?", ents[author.facts["born_in"]], [s.id, author.id], author,
            [s.name, author.name])


def _make_questions(cfg: WorldConfig, ents: dict[str, Entity]) -> list[QAExample]:
    out = []
    for rel in cfg.relations:
        kind = "work" if rel.startswith("author") else "person"
        for s in (e for e in ents.values() if e.kind == kind):
            question, ans, evidence, bridge, hops = _question(rel, s, ents)
            meta = {"type": "two-hop" if rel in TWO_HOP else "single-hop", "relation": rel,
                    "evidence_ids": evidence, "subject": s.name, "subject_id": s.id,
                    "answer_id": ans.id, "hop_queries": hops, "data_source": "searchworld"}
            if bridge is not None:
                meta["bridge"] = bridge.name
            out.append(QAExample(f"sw-{rel}-{s.id}", question, ans.aliases, meta))
    return out


def _split(cfg: WorldConfig, questions: list[QAExample], ents: dict[str, Entity],
           rng: random.Random) -> dict[str, list[QAExample]]:
    subjects = sorted(e.id for e in ents.values() if e.kind in ("person", "work"))
    heldout = set(rng.sample(subjects, round(cfg.heldout_frac * len(subjects))))
    pool = [q for q in questions if q.metadata["subject_id"] not in heldout]
    rng.shuffle(pool)
    n_dev, n_test = round(cfg.dev_frac * len(pool)), round(cfg.test_frac * len(pool))
    splits = {"train": pool[n_dev + n_test:], "dev": pool[:n_dev], "test": pool[n_dev:n_dev + n_test]}
    if heldout:
        splits["heldout"] = [q for q in questions if q.metadata["subject_id"] in heldout]
    for name, qs in splits.items():
        for q in qs:
            q.metadata["split"] = name
    return splits


def generate_world(config: WorldConfig | None = None) -> World:
    """Build the whole world from ``config`` (deterministic for ``config.seed``)."""
    cfg = config or WorldConfig()
    rng = random.Random(cfg.seed)
    ents = _make_entities(cfg, rng)
    docs = _make_documents(cfg, ents, rng)
    questions = _make_questions(cfg, ents)
    splits = _split(cfg, questions, ents, rng)
    return World(cfg, ents, docs, questions, splits)
