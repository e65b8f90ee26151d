"""Pretraining/SFT traces: the exact protocol the rollout produces, well-formed, and honest about their policy."""
import random

import pytest

from searchr1.data.world import WorldConfig, generate_world
from searchr1.demo.traces import random_policy_response, teacher_response
from searchr1.rewards import exact_match, extract_answer, validate_format
from searchr1.rewards.tags import strip_information
from searchr1.search.bm25 import BM25Config, BM25Retriever


@pytest.fixture(scope="module")
def world_and_bm25():
    w = generate_world(WorldConfig(seed=5, people=30, works=6))
    return w, BM25Retriever.build(w.documents, BM25Config(backend="numpy"))


def test_random_policy_traces_are_well_formed_and_mostly_wrong(world_and_bm25):
    w, bm25 = world_and_bm25
    rng = random.Random(0)
    qs = w.questions[:80]
    responses = [random_policy_response(q, bm25, rng) for q in qs]
    assert all(validate_format(r).ok for r in responses)
    assert {r.count("<search>") for r in responses} == {0, 1, 2}
    read_mentions = 0
    for q, r in zip(qs, responses):  # queries: spans of the question, or mentions read in earlier results
        blocks = r.split("<search>")[1:]
        for i, block in enumerate(blocks):
            query = block.split("</search>")[0].strip()
            earlier = "".join(b.split("</search>", 1)[1] for b in blocks[:i])  # only what was read before
            assert query in q.question or query in earlier
            read_mentions += query not in q.question
    assert read_mentions > 0  # a second search may follow a lead it read (what two-hop needs)
    em = sum(exact_match(extract_answer(r), q.golden_answers) for q, r in zip(qs, responses)) / len(qs)
    assert em < 0.3  # right only by chance


def test_teacher_traces_search_the_hops_and_answer_correctly(world_and_bm25):
    w, bm25 = world_and_bm25
    for q in w.questions[::7]:
        r = teacher_response(q, bm25)
        assert validate_format(r).ok
        assert r.count("<search>") == len(q.metadata["hop_queries"]) == (2 if q.metadata["type"] == "two-hop" else 1)
        assert exact_match(extract_answer(r), q.golden_answers) == 1.0


def test_answer_candidates_are_distinct_mentions_not_in_the_question():
    from searchr1.demo.traces import answer_candidates

    read = 'Doc 1(Title: "Bor Kel") Bor Kel was born in Tavmor. Bor Kel works for Zun Guild. Tavmor is far.'
    assert answer_candidates(read, "Where was Bor Kel born?") == ["Tavmor", "Zun Guild"]


def test_type_prior_answers_a_mention_of_the_asked_kind_but_not_the_gold_one(world_and_bm25):
    """With entity kinds the random policy answers a city for "Where ... born?", a country for
    "In which country ...": the answer-type prior of any LM. Which one is still chance."""
    from searchr1.demo.traces import ANSWER_KIND, answer_candidates, entity_kinds

    w, bm25 = world_and_bm25
    kinds = entity_kinds(w)
    rng = random.Random(1)
    typed_ok = answered_read = em = n_choice = 0
    for q in w.questions:
        r = random_policy_response(q, bm25, rng, kinds=kinds)
        answer = extract_answer(r)
        read = strip_information(r) != r and "".join(b.split("</information>")[0] for b in r.split("<information>")[1:])
        if not read:
            continue
        pool = answer_candidates(read, q.question)
        want = ANSWER_KIND[q.metadata["relation"]]
        if any(kinds.get(m) == want for m in pool):
            answered_read += 1
            typed_ok += kinds.get(answer) == want
            if sum(kinds.get(m) == want for m in pool) > 1:
                n_choice += 1
                em += exact_match(answer, q.golden_answers)
    assert answered_read > 50 and typed_ok == answered_read
    assert n_choice > 20 and em / n_choice < 0.8  # several candidates of the right kind: still a guess


def test_title_words_are_not_mentions():
    from searchr1.demo.traces import candidate_mentions

    assert candidate_mentions('Doc 2(Title: "Notes on Bor Kel") Readers of Zun met Bor Kel.') == ["Bor Kel", "Zun", "Bor Kel"]
