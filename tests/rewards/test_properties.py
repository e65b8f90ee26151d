"""Property-based tests for normalization, extraction and the format grammar."""
import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from searchr1.rewards import (
    compute_score,
    exact_match,
    extract_answer,
    f1,
    normalize_answer,
    subem,
    validate_format,
)

FAST = settings(max_examples=100, deadline=None)  # per test: no global profile changes

TAGS = ["<think>", "</think>", "<search>", "</search>", "<information>", "</information>",
        "<answer>", "</answer>"]
# text pieces mixing unicode, punctuation, articles and tags
pieces = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8),
    st.sampled_from(TAGS + [" the ", " a ", "An", "!", "é", "日本", "\n", "  "]),
)
texts = st.lists(pieces, max_size=12).map("".join)
# answer contents without tag characters
plain = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>"), max_size=20)


@FAST
@given(texts)
def test_normalize_is_idempotent_and_clean(s):
    n = normalize_answer(s)
    assert normalize_answer(n) == n
    assert n == n.strip() and "  " not in n
    assert not any(ch in string.punctuation for ch in n)
    assert not any(w in ("a", "an", "the") for w in n.split())
    assert n == n.lower()


@FAST
@given(texts, st.lists(texts, min_size=1, max_size=3))
def test_metric_relations(pred, golds):
    em, sub, f = exact_match(pred, golds), subem(pred, golds), f1(pred, golds)
    assert em in (0.0, 1.0) and sub in (0.0, 1.0) and 0.0 <= f <= 1.0
    if em == 1.0 and normalize_answer(pred):
        assert sub == 1.0 and f == 1.0


@FAST
@given(st.lists(plain, min_size=1, max_size=4), texts)
def test_extract_last_of_several(answers, tail_noise):
    tail = tail_noise.replace("</answer>", "")  # noise may open but never closes another answer
    response = "".join(f"<think>x</think><answer>{a}</answer>" for a in answers) + tail
    assert extract_answer(response) == answers[-1].strip()


@FAST
@given(plain, plain)
def test_extract_nested_and_unclosed(outer, inner):
    assert extract_answer(f"<answer>{outer}<answer>{inner}</answer>") == inner.strip()
    assert extract_answer(f"<answer>{outer}") is None
    assert extract_answer(f"<answer>{outer}</answer><answer>{inner}") == outer.strip()


@FAST
@given(texts)
def test_extract_matches_reference(response):
    # reference: among all complete answer blocks without an inner <answer>, the last one
    found = re.findall(r"<answer>((?:(?!<answer>).)*?)</answer>", response, flags=re.S)
    expected = found[-1].strip() if found else None
    assert extract_answer(response) == expected


@FAST
@given(st.lists(st.tuples(plain, plain), max_size=3), plain, plain)
def test_generated_well_formed_responses_validate(turns, thought, answer):
    body = "".join(f"<think>{t}</think>\n<search>{q}</search>\n<information>{q}</information>\n"
                   for t, q in turns)
    response = body + f"<think>{thought}</think> <answer>{answer}</answer>\n"
    assert validate_format(response).ok
    score, comp = compute_score(response, [answer or "x"], "format")
    assert comp["format"] == 1.0 and score >= 0.2


@FAST
@given(texts)
def test_validator_never_crashes_and_requires_final_answer(response):
    check = validate_format(response)
    assert isinstance(check.reason, str) and check.reason
    if check.ok:
        assert response.rstrip().endswith("</answer>")
        assert extract_answer(response) is not None


policy_plain = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>"),
                       max_size=10)


@FAST
@given(st.lists(st.tuples(policy_plain, texts), min_size=1, max_size=4))
def test_injected_text_never_yields_the_answer(pairs):
    # policy pieces hold no tags; injected pieces hold anything, answers included
    segments = []
    for policy, injected in pairs:
        segments += [(policy, True), (injected + "<answer>INJECTED</answer>", False)]
    response = "".join(t for t, _ in segments)
    assert compute_score(response, ["INJECTED"], segments=segments)[0] == 0.0
    assert compute_score(None, ["INJECTED"], "format", segments=segments)[0] == 0.0


@FAST
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
               max_size=30),
       st.sampled_from(["search-r1", "r1", "direct", "cot"]))
def test_question_recovered_from_every_template(question, template):
    from searchr1.data.prompts import make_prompt, normalize_question
    from searchr1.data.searchr1_format import question_from_prompt

    assert question_from_prompt(make_prompt(question, template)) == normalize_question(question)


CODES = {"think": "T", "search": "S", "information": "I", "answer": "A"}


@FAST
@given(st.lists(st.tuples(st.sampled_from(list(CODES)), plain, st.sampled_from(["", " ", "\n", "\n\n "])),
                max_size=8),
       st.booleans())
def test_grammar_matches_reference_regex(blocks, require_think):
    response = "".join(f"<{name}>{content}</{name}>{ws}" for name, content, ws in blocks)
    codes = "".join(CODES[name] for name, _, _ in blocks)
    reference = r"(TSI)*TA" if require_think else r"(T?SI)*T?A"
    assert validate_format(response, require_think=require_think).ok == bool(re.fullmatch(reference, codes))
