"""The real-Wikipedia definition questions."""
from searchr1.eval.wiki_qa import build_wiki_qa, definition_question


def test_definition_question_rules():
    q = definition_question("On the Road", "On the Road is a 1957 novel by American writer Jack Kerouac, based on "
                            "his travels. It was influential.")
    assert q == "What is a 1957 novel by American writer Jack Kerouac, based on his travels?" or \
        q == "What is a 1957 novel by American writer Jack Kerouac?"
    assert definition_question("Mercury (planet)", "Mercury is the first planet from the Sun in our solar system.") \
        == "What is the first planet from the Sun in our solar system?"
    assert definition_question("Paris", "The city of Paris is big and old and famous.") is None   # no "Title is"
    assert definition_question("Jazz", "Jazz is a style of jazz music from New Orleans.") is None  # leaks the title
    assert definition_question("X", "X is short.") is None


def test_build_wiki_qa_points_at_the_right_passages():
    from searchr1.search.corpus_build import iter_wiki_passages

    qs = build_wiki_qa(5, seed=1)
    assert len(qs) == 5 and len({q.id for q in qs}) == 5 and qs == build_wiki_qa(5, seed=1)
    wanted = {q.metadata["evidence_ids"][0]: q for q in qs}
    for doc in iter_wiki_passages(100):
        if doc.id in wanted:
            q = wanted.pop(doc.id)
            assert doc.title == q.golden_answers[0] and q.question.startswith("What ")
    assert not wanted
