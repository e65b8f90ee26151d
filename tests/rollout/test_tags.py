from hypothesis import given, settings
from hypothesis import strategies as st

from searchr1.rollout.tags import INVALID_ACTION_TEXT, parse_action


def test_corrective_text_is_search_r1_verbatim():
    assert INVALID_ACTION_TEXT == (
        "\nMy previous action is invalid. If I want to search, I should put the query between <search> and "
        "</search>. If I want to give the final answer, I should put the answer between <answer> and </answer>. "
        "Let me try again.\n"
    )


def test_search_and_answer():
    a = parse_action("<think> hmm </think>\n<search>  capital of France </search>")
    assert (a.kind, a.content) == ("search", "capital of France")
    a = parse_action("<think>x</think><answer> Paris </answer> trailing")
    assert (a.kind, a.content) == ("answer", "Paris")


def test_no_tags_and_unclosed_are_invalid():
    assert parse_action("I think the answer is Paris.").kind == "invalid"
    assert parse_action("<search> capital of France").kind == "invalid"
    assert parse_action("capital of France </search>").kind == "invalid"
    assert parse_action("<answer> Paris").kind == "invalid"


def test_first_complete_action_wins():
    a = parse_action("<search> first </search> <search> second </search>")
    assert a.content == "first"
    a = parse_action("<answer> A </answer><search> q </search>")
    assert (a.kind, a.content) == ("answer", "A")
    # the search closes first although the answer opened first
    a = parse_action("<answer> x <search> q </search> y </answer>")
    assert (a.kind, a.content) == ("search", "q")
    # content starts at the last opener before the first closer
    assert parse_action("<search> a <search> b </search>").content == "b"


def test_empty_or_whitespace_query_is_invalid():
    assert parse_action("<search></search>").kind == "invalid"
    assert parse_action("<search> \n\t </search>").kind == "invalid"


def test_too_long_query_is_truncated_and_counted():
    q = "word " * 30
    a = parse_action(f"<search>{q}</search>", max_query_chars=20)
    assert a.kind == "search"
    assert len(a.content) <= 20 and q.strip().startswith(a.content)
    assert a.query_chars_cut == len(q.strip()) - 20


def test_search_tags_are_text_when_search_disabled():
    assert parse_action("<search> q </search>", allow_search=False).kind == "invalid"
    a = parse_action("<search> q </search><answer> A </answer>", allow_search=False)
    assert (a.kind, a.content) == ("answer", "A")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(list("ab <>/") + ["<search>", "</search>", "<answer>", "</answer>"]),
                max_size=30).map("".join))
def test_parser_properties(text):
    a = parse_action(text)
    assert a.kind in ("search", "answer", "invalid")
    if a.kind == "invalid":
        assert a.content == ""
    else:
        tag = a.kind
        assert f"</{tag}>" in text and f"<{tag}>" in text
        assert a.content == a.content.strip() and a.content in text
        if tag == "search":
            assert a.content
