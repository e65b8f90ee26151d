"""Pretraining/SFT traces: the exact protocol the rollout produces, well-formed, and honest about their policy."""
import random

import pytest

from searchr1.data.world import WorldConfig, generate_world
from searchr1.data.traces import random_policy_response, teacher_response
from searchr1.rewards import exact_match, extract_answer, validate_format
from searchr1.protocol import strip_information
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
    from searchr1.data.traces import answer_candidates

    read = 'Doc 1(Title: "Bor Kel") Bor Kel was born in Tavmor. Bor Kel works for Zun Guild. Tavmor is far.'
    assert answer_candidates(read, "Where was Bor Kel born?") == ["Tavmor", "Zun Guild"]


def test_type_prior_answers_a_mention_of_the_asked_kind_but_not_the_gold_one(world_and_bm25):
    """With entity kinds the random policy answers a city for "Where ... born?", a country for
    "In which country ...": the answer-type prior of any LM. Which one is still chance."""
    from searchr1.data.traces import ANSWER_KIND, answer_candidates, entity_kinds

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
    from searchr1.data.traces import candidate_mentions

    assert candidate_mentions('Doc 2(Title: "Notes on Bor Kel") Readers of Zun met Bor Kel.') == ["Bor Kel", "Zun", "Bor Kel"]


def test_reader_answers_right_exactly_when_the_evidence_was_read(world_and_bm25):
    """reader=True: the random policy reads like a pretrained LM (right answer iff every evidence
    passage was retrieved) while its searches stay random; restate=True: its thinks restate the question."""
    from searchr1.data.traces import entity_kinds, supported

    w, bm25 = world_and_bm25
    kinds = entity_kinds(w)
    rng = random.Random(2)
    n_supported = n_unsupported_right = 0
    by_type = {"single-hop": [0, 0], "two-hop": [0, 0]}
    for q in w.questions:
        r = random_policy_response(q, bm25, rng, min_searches=1, kinds=kinds, reader=True, restate=True)
        assert validate_format(r).ok
        thinks = [b.split("</think>")[0] for b in r.split("<think>")[1:]]
        assert thinks and all(q.question in t for t in thinks)
        read_ids = {d.id for d in w.documents if f'"{d.title}")' in r or f'(Title: "{d.title}")' in r}
        em = exact_match(extract_answer(r), q.golden_answers)
        if supported(q, read_ids):
            n_supported += 1
            assert em == 1.0
        else:
            n_unsupported_right += em
        by_type[q.metadata["type"]][0] += em
        by_type[q.metadata["type"]][1] += 1
    assert n_supported > 30
    assert n_unsupported_right < 0.3 * (len(w.questions) - n_supported)  # a lucky guess, not knowledge
    single = by_type["single-hop"][0] / by_type["single-hop"][1]
    two = by_type["two-hop"][0] / by_type["two-hop"][1]
    assert two < 0.3 and two < single  # random searches rarely find both hops: the strategy is RL's to learn


def test_follow_leads_searches_a_mention_of_the_top_passage_just_read(world_and_bm25):
    from searchr1.data.traces import answer_candidates

    w, bm25 = world_and_bm25
    rng = random.Random(3)
    follows = 0
    for q in w.questions[:60]:
        r = random_policy_response(q, bm25, rng, min_searches=2, max_searches=2, follow_leads=1.0)
        first, second = [b.split("</search>")[0].strip() for b in r.split("<search>")[1:]]
        hits = bm25.search([first], 3)[0]
        leads = answer_candidates(hits[0].doc.contents, q.question) if hits else []
        if leads:
            assert second in leads
            follows += 1
    assert follows > 30


def test_read_fact_notes_the_sentence_for_the_next_step_and_only_what_was_read(world_and_bm25):
    from searchr1.data.traces import read_fact

    w, _ = world_and_bm25
    text = {d.id: d.text for d in w.documents}
    q = next(q for q in w.questions if q.metadata["relation"] == "birth_country")
    first, second = q.metadata["evidence_ids"]
    assert read_fact(q, {}) == ""
    assert read_fact(q, {second: text[second]}) == ""  # the first hop was not read
    hop1 = read_fact(q, {first: text[first]})
    assert q.metadata["bridge"] in hop1 and " born in " in hop1 and hop1 in text[first]
    hop2 = read_fact(q, {first: text[first], second: text[second]})
    assert q.golden_answers[0] in hop2 and hop2 in text[second]
    single = next(q for q in w.questions if q.metadata["relation"] == "employer")
    s = single.metadata["evidence_ids"][0]
    assert read_fact(single, {s: text[s]}) == f"{single.metadata['subject']} works for {single.golden_answers[0]}."
