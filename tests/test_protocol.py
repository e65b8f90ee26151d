"""The protocol module: the action parser (rollout), answer extraction (rewards, eval) and the one
complete-block rule they share. Format-grammar tests live in tests/rewards/ (re-exported there)."""
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from searchr1.protocol import (
    INVALID_ACTION_TEXT,
    complete_blocks,
    extract_answer,
    information,
    parse_action,
    policy_answer,
)


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


def test_complete_blocks_pair_a_closer_with_the_last_opener_before_it():
    assert [c for _, _, c in complete_blocks("<x> a <x> b </x>", "x")] == [" b "]
    assert [c for _, _, c in complete_blocks("<x>a</x>b</x>", "x")] == ["a"]
    assert [c for _, _, c in complete_blocks("</x><x>q</x><x>r", "x")] == ["q"]
    assert list(complete_blocks("<x>a</x><x>b</x>", "x")) == [(0, 8, "a"), (8, 16, "b")]


def test_extract_answer_takes_the_last_complete_answer():
    assert extract_answer("<answer>a<answer>b</answer>") == "b"
    assert extract_answer("<answer>a</answer>b</answer>") == "a"
    assert extract_answer("<answer> a </answer> <answer> b </answer> <answer> c") == "b"
    assert extract_answer("<answer></answer>") == ""
    assert extract_answer("no answer </answer>") is None


def test_wire_format():
    assert information("body") == "\n\n<information>body</information>\n\n"


# A turn that ends at its first complete action: free text with no complete action of its own,
# then the action. Free text may hold stray tags (unclosed openers, closers without openers).
_free = st.lists(st.sampled_from(["a", " ", "x y", "<answer>", "<search>", "<think>", "</think>", "\n",
                                  "</answer>", "</search>"]), max_size=8).map("".join)
_content = st.text(alphabet="abc xyz", max_size=6)


def _turn(free: str, kind: str, content: str) -> str | None:
    """``free<kind>content</kind>``, or None when that block is not the turn's first complete action."""
    text = f"{free}<{kind}>{content}</{kind}>"
    for tag in ("search", "answer"):
        first = next(complete_blocks(text, tag), None)
        if first is not None and first[1] < len(text):
            return None          # the free text holds an earlier complete action
    return text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_free, _content), max_size=3), _free, _content,
       st.lists(st.text(alphabet="ab <>/", max_size=10), min_size=3, max_size=3))
def test_engine_answer_equals_extract_answer(searches, free, answer, bodies):
    """For turns that each end at their first complete action, the engine's answer (parse_action of
    the answering turn) is the last complete answer of the policy text (extract_answer), and the
    reward's policy_answer over the whole response with observations in between."""
    turns = [_turn(f, "search", c) for f, c in searches if c.strip()] + [_turn(free, "answer", answer)]
    assume(all(t is not None for t in turns))
    engine_answer = parse_action(turns[-1]).content
    assert extract_answer("".join(turns)) == engine_answer
    segments = []
    for k, t in enumerate(turns):
        segments.append((t, True))
        if k < len(turns) - 1:
            segments.append((information(bodies[k].replace("</information>", "")), False))
    response = "".join(text for text, _ in segments)
    assert policy_answer(response, segments) == engine_answer
