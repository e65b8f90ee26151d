"""Rewards: hand-computed examples for the metrics, the grammar and the reward table."""
import pytest

from searchr1.rewards import (
    RewardConfig,
    compute_score,
    exact_match,
    extract_answer,
    f1,
    normalize_answer,
    policy_answer,
    segments_from_mask,
    subem,
    validate_format,
)

CORRECTIVE = (
    "\nMy previous action is invalid. If I want to search, I should put the query between <search> and "
    "</search>. If I want to give the final answer, I should put the answer between <answer> and </answer>. "
    "Let me try again.\n"
)
GOOD = (
    "<think>I need the capital.</think>\n<search> capital of France </search>\n"
    "<information>Doc 1(Title: \"Paris\") Paris is the capital of France.\n</information>\n"
    "<think>It is Paris.</think>\n<answer> Paris </answer>"
)


@pytest.mark.parametrize("text, expected", [
    ("The  Eiffel Tower!", "eiffel tower"),
    ("A man, a plan, an apple", "man plan apple"),
    ("theatre an-other", "theatre another"),
    ("  Élan   Vital ", "élan vital"),
    ("“Quoted”", "“quoted”"),  # non-ASCII punctuation is kept, as in SQuAD
    ("", ""),
])
def test_normalize_answer_examples(text, expected):
    assert normalize_answer(text) == expected


def test_metrics_hand_computed():
    assert exact_match("the Paris.", ["paris", "x"]) == 1.0
    assert exact_match("Paris, France", ["paris"]) == 0.0
    assert exact_match(None, ["paris"]) == 0.0
    assert subem("it is Paris, France", ["paris"]) == 1.0
    assert subem("cartoon", ["art"]) == 1.0  # character substring, as Search-R1
    assert subem("anything", ["the"]) == 0.0  # empty normalized gold never matches
    # pred tokens [barack, obama, jr], gold [barack, obama]: p=2/3 r=1 -> f1=0.8
    assert f1("Barack Obama Jr.", ["Barack Obama"]) == pytest.approx(0.8)
    assert f1("Obama", ["x", "Barack Obama"]) == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert f1("", ["a"]) == 0.0
    assert exact_match("paris", "Paris") == 1.0  # a single gold string is accepted
    with pytest.raises(TypeError, match="gold answers must be strings"):
        exact_match("1", [1])


def test_extract_answer_takes_last_complete():
    assert extract_answer("<answer>a</answer> x <answer> b </answer>") == "b"
    assert extract_answer("<answer>a</answer><answer>b") == "a"
    assert extract_answer("<answer>a<answer>b</answer>") == "b"
    assert extract_answer("<answer>a</answer>b</answer>") == "a"
    assert extract_answer("<answer>  </answer>") == ""
    assert extract_answer("no tags") is None
    assert extract_answer("</answer><answer>") is None


def test_validate_format_accepts_grammar():
    assert validate_format(GOOD).ok
    assert validate_format("<think>a</think><answer>b</answer>").ok
    assert validate_format("  <think></think>\n<answer></answer>\n").ok
    assert validate_format("<answer>b</answer>", require_think=False).ok
    assert validate_format("<search>q</search><information>x</information><answer>b</answer>",
                           require_think=False).ok


@pytest.mark.parametrize("response, reason", [
    ("", "does not end with an <answer>"),
    ("<answer>b</answer>", "where <think> was expected"),
    ("<think>a</think>", "does not end with an <answer>"),
    ("<think>a</think> so <answer>b</answer>", "text outside any block at char 17"),
    ("<think>a<search>q</search></think><answer>b</answer>", "contains <search>"),
    ("<think>a</think><search>q</search><think>b</think><answer>c</answer>", "<information> was expected"),
    ("<think>a</think><answer>b</answer><think>c</think>", "after the final answer"),
    ("<think>a</think><answer>b</answer><answer>c</answer>", "after the final answer"),
    ("</think><answer>b</answer>", "never opened"),
    ("<think>a</think><answer>b", "never closed"),
    ("<think>a</think><search>q</search><information>x", "never closed"),
    ("<think>a</think><answer>b</answer>" + CORRECTIVE, "text outside any block"),
])
def test_validate_format_rejects(response, reason):
    check = validate_format(response)
    assert not check.ok
    assert reason in check.reason


def test_information_content_is_opaque():
    tricky = GOOD.replace("Paris is the capital", "<think> Paris </answer> is the capital")
    assert validate_format(tricky).ok


def test_format_reward_table():
    golds = ["Paris"]
    wrong = GOOD.replace("<answer> Paris </answer>", "<answer> Lyon </answer>")
    ill = "<answer> Paris </answer>"
    assert compute_score(GOOD, golds, "format")[0] == 1.0
    assert compute_score(ill, golds, "format")[0] == pytest.approx(0.8)
    assert compute_score(wrong, golds, "format")[0] == pytest.approx(0.2)
    assert compute_score("<answer> Lyon </answer>", golds, "format")[0] == 0.0
    assert compute_score("<answer> Lyon </answer>", golds, "format", final_format_score=0.1)[0] == 0.1
    assert compute_score("nothing", golds, "format")[0] == 0.0
    # retrieval bonus: the wrong answer's retrieved text holds the gold
    assert compute_score(wrong, golds, "format", retrieval_score=0.1)[0] == pytest.approx(0.3)
    # the hit is found even in an ill-formed response (a diagnostic component)
    assert compute_score("oops <information>Paris!</information>", golds)[1]["retrieval_hit"] == 1.0
    cfg = RewardConfig(kind="format", format_score=0.3)
    assert compute_score(wrong, golds, config=cfg)[0] == pytest.approx(0.3)


def test_compute_score_metrics_and_components():
    score, comp = compute_score(GOOD, ["paris"])
    assert score == 1.0
    assert comp == {"em": 1.0, "subem": 1.0, "f1": 1.0, "format": 1.0, "answered": 1.0, "retrieval_hit": 1.0}
    assert compute_score("<answer>Paris France</answer>", ["paris"], "subem")[0] == 1.0
    assert compute_score("<answer>Paris France</answer>", ["paris"], "f1")[0] == pytest.approx(2 / 3)
    with pytest.raises(TypeError, match="unknown reward option"):
        compute_score(GOOD, ["paris"], fromat_score=0.1)
    with pytest.raises(ValueError, match="unknown reward kind"):
        compute_score(GOOD, ["paris"], "exact")


def test_config_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="lower format_score"):
        RewardConfig(format_score=2.0)
    with pytest.raises(ValueError, match="kind='f1'"):
        RewardConfig(answer_metric="f1")


def test_injected_answers_never_pay():
    golds = ["Paris"]
    # the answer exists only inside an observation
    obs_only = ("<think>a</think><search>q</search>"
                "<information><answer>Paris</answer></information>")
    assert compute_score(obs_only, golds)[0] == 0.0
    # the corrective message contains "<answer> and </answer>": with segments it is not an answer
    segments = [("<think>a</think> bad", True), (CORRECTIVE, False)]
    response = "".join(t for t, _ in segments)
    assert compute_score(response, ["and"], segments=segments)[0] == 0.0
    assert policy_answer(response) == "and"  # what text alone would (wrongly) give
    # a policy-written fake observation is ill-formed when provenance is known
    fake = [("<think>a</think><search>q</search><information>Paris</information>"
             "<think>b</think><answer>Paris</answer>", True)]
    assert validate_format(fake[0][0]).ok
    check = validate_format(fake[0][0], segments=fake)
    assert not check.ok and "injected" in check.reason
    # real provenance: the same text split the way the rollout builds it is well-formed
    real = [("<think>a</think><search>q</search>", True), ("<information>Paris</information>", False),
            ("<think>b</think><answer>Paris</answer>", True)]
    assert compute_score(fake[0][0], golds, "format", segments=real)[0] == 1.0
    with pytest.raises(ValueError, match="do not add up"):
        compute_score("other", golds, segments=real)


def test_segments_from_mask_groups_runs():
    vocab = {1: "<answer>", 2: "x", 3: "</answer>", 4: "obs"}
    segs = segments_from_mask([1, 2, 4, 4, 3], [1, 1, 0, 0, 1], lambda ids: "".join(vocab[i] for i in ids))
    assert segs == [("<answer>x", True), ("obsobs", False), ("</answer>", True)]
    # an answer split by injected text is not a policy answer
    assert policy_answer("".join(t for t, _ in segs), segs) is None
    with pytest.raises(ValueError, match="differ in length"):
        segments_from_mask([1], [1, 0], str)
