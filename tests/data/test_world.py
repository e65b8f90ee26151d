"""SearchWorld sanity: answerable from evidence, answers never in questions, determinism, splits."""
import json

import pytest

from searchr1.data.world import RELATIONS, WorldConfig, generate_world
from searchr1.data.world_io import answer_in_text, write_world
from searchr1.rewards.metrics import normalize_answer


@pytest.fixture(scope="module")
def world():
    return generate_world(WorldConfig(seed=3, people=120, works=30, heldout_frac=0.1))


def _docs(world):
    return {d.id: d for d in world.documents}


def test_every_question_answerable_from_its_evidence(world):
    docs = _docs(world)
    for q in world.questions:
        ev = [docs[i] for i in q.metadata["evidence_ids"]]
        assert answer_in_text(q.golden_answers, ev[-1].contents), q
        if q.metadata["type"] == "two-hop":
            assert len(ev) == 2
            # hop 1 names the bridge; hop 2 is the bridge's own passage
            assert q.metadata["bridge"] in ev[0].text and ev[1].title == q.metadata["bridge"]
            assert q.metadata["hop_queries"] == [q.metadata["subject"], q.metadata["bridge"]]
        else:
            assert len(ev) == 1 and ev[0].title == q.metadata["subject"]


def test_answers_never_appear_in_their_question(world):
    for q in world.questions:
        assert not answer_in_text(q.golden_answers, q.question), q
        assert all(normalize_answer(a) not in normalize_answer(q.question) for a in q.golden_answers)


def test_two_hop_first_hop_evidence_lacks_the_final_answer(world):
    docs = _docs(world)
    two_hop = [q for q in world.questions if q.metadata["type"] == "two-hop"]
    assert {q.metadata["relation"] for q in two_hop} == {"birth_country", "employer_city", "author_birthplace"}
    for q in two_hop:
        first = docs[q.metadata["evidence_ids"][0]]
        assert not answer_in_text(q.golden_answers, first.contents), q


def test_distractors_mention_their_subject_but_answer_none_of_its_questions(world):
    docs = _docs(world)
    distractors = [d for d in world.documents if "-d" in d.id]
    assert len(distractors) == len(world.of_kind("person")) + len(world.of_kind("work"))
    by_subject = {}
    for q in world.questions:
        by_subject.setdefault(q.metadata["subject_id"], []).append(q)
    for d in distractors:
        subject = world.entity(d.id.rsplit("-d", 1)[0])
        assert subject.name in d.text
        for q in by_subject[subject.id]:
            assert not answer_in_text(q.golden_answers, d.contents), (d, q)
        assert d.id not in {i for q in world.questions for i in q.metadata["evidence_ids"]}
    assert all(d.text for d in docs.values())


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = generate_world(WorldConfig(seed=11, people=40, works=10))
    b = generate_world(WorldConfig(seed=11, people=40, works=10))
    c = generate_world(WorldConfig(seed=12, people=40, works=10))
    assert a.documents == b.documents and a.questions == b.questions
    assert {k: [q.id for q in v] for k, v in a.splits.items()} == {k: [q.id for q in v] for k, v in b.splits.items()}
    assert a.documents != c.documents


def test_splits_disjoint_and_heldout_subjects_unseen(world):
    s = world.splits
    assert set(s) == {"train", "dev", "test", "heldout"}
    ids = [q.id for qs in s.values() for q in qs]
    texts = [q.question for qs in s.values() for q in qs]
    assert len(ids) == len(set(ids)) == len(world.questions) == len(set(texts))
    held = {q.metadata["subject_id"] for q in s["heldout"]}
    assert held and not held & {q.metadata["subject_id"] for n in ("train", "dev", "test") for q in s[n]}
    assert all(q.metadata["split"] == name for name, qs in s.items() for q in qs)


def test_names_are_short_and_distinct_across_kinds(world):
    words_by_kind = {}
    for e in world.entities.values():
        if e.kind != "work":
            words_by_kind.setdefault(e.kind, set()).update(e.name.lower().split())
    cities, countries, people = words_by_kind["city"], words_by_kind["country"], words_by_kind["person"]
    assert not (cities & countries) and not (cities & people) and not (countries & people)
    assert max(len(e.name.split()) for e in world.entities.values()) <= 4


def test_relations_subset_and_config_errors():
    w = generate_world(WorldConfig(people=20, works=0, relations=("birthplace", "birth_country")))
    assert {q.metadata["relation"] for q in w.questions} == {"birthplace", "birth_country"}
    with pytest.raises(ValueError, match="choose from"):
        WorldConfig(relations=("nope",))
    with pytest.raises(ValueError, match="works > 0"):
        WorldConfig(works=0)
    with pytest.raises(ValueError, match="raise cities"):
        WorldConfig(cities=4, countries=5)
    assert set(RELATIONS) == {q.metadata["relation"] for q in generate_world(WorldConfig(people=10, works=5)).questions}


def test_write_world_files_are_well_formed(world, tmp_path):
    from searchr1.search.corpus import load_corpus

    stats = write_world(world, tmp_path)
    corpus = load_corpus(tmp_path / "corpus.jsonl")
    assert corpus == world.documents
    for name, qs in world.splits.items():
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [q.id for q in qs]
        assert all(set(r) == {"id", "question", "golden_answers", "metadata"} for r in rows)
        assert stats["splits"][name]["total"] == len(rows)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert "| test |" in (tmp_path / "stats.md").read_text()


def test_cli_writes_world_with_bm25_stats_and_teacher_sft(tmp_path):
    from searchr1.cli import main

    rc = main(["world", "--seed", "2", "--out", str(tmp_path), "--entities", "30", "--works", "6",
               "--teacher-sft", "4"])
    assert rc == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    rec = stats["retrieval"]["answer_in_topk"]
    assert rec["single-hop"]["top3"] > rec["two-hop"]["top3"]  # raw-question retrieval misses the second hop
    rows = [json.loads(line) for line in (tmp_path / "teacher_sft.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["prompt"].endswith("?\n") and "<answer>" in r["response"] for r in rows)
    assert main(["world", "--out", str(tmp_path), "--cities", "2"]) == 2  # config error -> exit code 2
