"""Each method end to end on a tiny SearchWorld with the real BM25 index.

``ScriptedGenerator`` replaces only the language model: it reads what the method showed it
and answers with the gold answer only when that answer is visible in the documents it was
given, so EM here depends on the method retrieving (and passing on) the right passages.
"""
from __future__ import annotations

import pytest

from searchr1.eval.methods import get_method
from searchr1.eval.methods.ircot import FORCE_ANSWER
from searchr1.eval.types import EvalContext
from searchr1.models.generate import Decoding
from searchr1.protocol import INVALID_ACTION_TEXT, information

from .conftest import question_of


@pytest.fixture(scope="module")
def single_hop(world):
    qs = [q for q in world["world"].questions if q.metadata["relation"] == "birthplace"][:3]
    assert len(qs) == 3
    return qs


@pytest.fixture(scope="module")
def gold(world):
    return {q.question: q for q in world["world"].questions}


def reader(gold):
    """The scripted model's knowledge: nothing but what it reads in the prompt and its response."""
    def visible_answer(question, text):
        q = gold[question]
        return q.golden_answers[0] if q.golden_answers[0] in text else None
    return visible_answer


def test_direct_answers_from_the_prompt_only(single_hop, gold, retriever, scripted):
    seen = reader(gold)
    gen = scripted(lambda p, r: f"<answer> {seen(question_of(p), p) or 'unknown'} </answer>")
    preds = get_method("direct").run(single_hop, EvalContext(gen, retriever), dataset="w")
    assert [p.em for p in preds] == [0.0, 0.0, 0.0]          # no documents, so no answer
    assert all(p.answer == "unknown" and p.answer_source == "tag" for p in preds)
    assert all(p.searches == 0 and p.turns == 1 and p.evidence_recall is None for p in preds)
    assert gen.calls[0][2] == ["</answer>"] and "Answer the given question directly" in gen.calls[0][0]


def test_rag_retrieves_with_the_question(single_hop, gold, retriever, scripted):
    seen = reader(gold)
    gen = scripted(lambda p, r: f"<answer> {seen(question_of(p), p) or 'unknown'} </answer>")
    preds = get_method("rag").run(single_hop, EvalContext(gen, retriever, topk=3), dataset="w")
    for ex, p in zip(single_hop, preds):
        assert p.queries == [ex.question] and p.searches == 1 and len(p.retrieved_ids[0]) == 3
        assert p.evidence_recall == float(ex.metadata["evidence_ids"][0] in p.retrieved_ids[0])
        assert p.em == p.evidence_recall                       # found the passage <=> answered right
    assert sum(p.em for p in preds) >= 2                       # BM25 finds a person's own passage


def test_ircot_uses_each_sentence_as_the_next_query(single_hop, gold, retriever, scripted):
    seen = reader(gold)

    def script(prompt, response):
        q = gold[question_of(prompt)]
        if not response:
            return f"First I look for facts about {q.metadata['subject']}. More text."
        ans = seen(q.question, prompt)
        return f"So the answer is: <answer> {ans} </answer>" if ans else "I still do not know. "

    preds = get_method("ircot").run(single_hop, EvalContext(gen := scripted(script), retriever, topk=2), dataset="w")
    for ex, p in zip(single_hop, preds):
        assert p.queries[0] == ex.question
        assert p.queries[1] == f"First I look for facts about {ex.metadata['subject']}."   # one sentence
        if p.em:
            assert p.finish_reason == "answer" and p.answer_source == "tag"
    assert sum(p.em for p in preds) >= 2
    assert all(set(c[2]) >= {". ", "\n"} for c in gen.calls)


def test_ircot_forces_an_answer_after_its_step_budget(single_hop, retriever, scripted):
    gen = scripted(lambda p, r: "Paris" if r.endswith(FORCE_ANSWER) else "Still thinking about it. ")
    p = get_method("ircot").run(single_hop[:1], EvalContext(gen, retriever, ircot_steps=3), dataset="w")[0]
    assert p.turns == 4 and p.searches == 1 + 3 and p.finish_reason == "max_steps"
    assert p.answer == "Paris" and p.response.endswith(FORCE_ANSWER + "Paris</answer>")


def test_search_o1_injects_condensed_documents(single_hop, gold, retriever, scripted):
    seen = reader(gold)

    def script(prompt, response):
        if prompt.startswith("Read the searched documents"):     # reason-in-documents call
            ans = seen(question_of(prompt), prompt)
            return f"Born in {ans}.\n\nignored" if ans else "No helpful information found."
        q = gold[question_of(prompt)]
        if "<information>" not in response:
            return f"<think>I need facts.</think><search> {q.metadata['subject']} </search> trailing"
        ans = seen(q.question, response)
        return f"<answer> {ans or 'unknown'} </answer>"

    preds = get_method("search-o1").run(single_hop, EvalContext(gen := scripted(script), retriever), dataset="w")
    for ex, p in zip(single_hop, preds):
        assert p.searches == 1 and p.queries == [ex.metadata["subject"]] and p.turns == 2
        info = p.response.split("<information>")[1].split("</information>")[0]
        assert "Doc 1(Title:" not in info                      # raw documents never reach the chain
        assert info in ("No helpful information found.", f"Born in {ex.golden_answers[0]}.")
        assert p.em == float(info != "No helpful information found.")
    assert sum(p.em for p in preds) >= 2 and len(gen.calls) == 3 * 3


def test_search_r1_text_loop_corrects_invalid_actions(single_hop, gold, retriever, scripted):
    seen = reader(gold)

    def script(prompt, response):
        q = gold[question_of(prompt)]
        if not response:
            return "I am not sure what to do, " * 4               # invalid: no action, cut by the budget
        if "<information>" not in response:
            return f"<think>search it</think><search> {q.metadata['subject']} </search>"
        return f"<think>found</think><answer> {seen(q.question, response) or 'unknown'} </answer>"

    method = get_method("search-r1", engine="text")
    ctx = EvalContext(scripted(script), retriever, max_turns=4, decoding=Decoding(max_new_tokens=8))
    preds = method.run(single_hop, ctx, dataset="w")
    for p in preds:
        assert p.invalid_actions == 1 and p.valid_actions == 2 and p.turns == 3 and p.searches == 1
        assert INVALID_ACTION_TEXT in p.response and p.finish_reason == "answer"
        assert p.segments[1] == ["env", INVALID_ACTION_TEXT]
        # token counts are the generator's own (here: words), not the byte tokenizer's
        assert p.response_tokens == sum(len(text.split()) for src, text in p.segments if src == "model")
    assert sum(p.em for p in preds) >= 2


def test_search_r1_text_loop_ends_a_row_at_eos_without_an_action(single_hop, retriever, scripted):
    """The rollout engine's rule, now on the text path too: a turn that ends its message without an
    action ends the row (the old text loop sent the corrective message and went on)."""
    gen = scripted(lambda p, r: "I am not sure what to do.")
    p = get_method("search-r1", engine="text").run(single_hop[:1], EvalContext(gen, retriever, max_turns=4), "w")[0]
    assert p.turns == 1 and p.invalid_actions == 1 and p.finish_reason == "eos" and p.answer is None
    assert INVALID_ACTION_TEXT not in p.response and len(gen.calls) == 1


def test_search_r1_last_turn_cannot_search(single_hop, retriever, scripted):
    gen = scripted(lambda p, r: "<search> again </search>")
    p = get_method("search-r1", engine="text").run(single_hop[:1], EvalContext(gen, retriever, max_turns=2), "w")[0]
    # the last turn's search is plain text; the message then ends without an answer (engine: "eos")
    assert p.searches == 1 and p.turns == 2 and p.finish_reason == "eos" and p.answer is None
    assert gen.calls[-1][2] == ["</answer>"]
    cut = scripted(lambda p, r: "<search> again </search> and on and on")   # the last turn hits its budget
    ctx = EvalContext(cut, retriever, max_turns=2, decoding=Decoding(max_new_tokens=4))
    p = get_method("search-r1", engine="text").run(single_hop[:1], ctx, "w")[0]
    assert p.searches == 1 and p.turns == 2 and p.finish_reason == "max_turns" and p.answer is None


def test_r1_counts_tagged_answers_only(single_hop, scripted):
    gen = scripted(lambda p, r: "<think>hmm</think> the answer is Paris")
    p = get_method("r1").run(single_hop[:1], EvalContext(gen, None), dataset="w")[0]
    assert p.answer is None and p.answer_source == "none" and p.em == 0.0
    assert "reasoning inside <think>" in gen.calls[0][0] and "<search>" not in gen.calls[0][0]


@pytest.mark.parametrize("name", ["direct", "cot", "rag", "ircot", "search-o1", "search-r1", "r1"])
def test_every_method_runs_a_tiny_random_model(name, tiny_lm, retriever, single_hop):
    from searchr1.models import HFGenerator

    model, tok = tiny_lm
    ctx = EvalContext(HFGenerator(model, tok), retriever, topk=2, decoding=Decoding(max_new_tokens=6),
                      max_turns=2, ircot_steps=2, model=model, tokenizer=tok)
    preds = get_method(name).run(single_hop[:2], ctx, dataset="w")
    assert [p.id for p in preds] == [str(q.id) for q in single_hop[:2]]
    for p in preds:
        assert 0 < p.response_tokens and p.turns >= 1 and p.response
        assert all(0.0 <= getattr(p, k) <= 1.0 for k in ("em", "subem", "f1"))
        assert (p.searches >= 1) == (name in ("rag", "ircot")) or name in ("search-o1", "search-r1")
        assert (p.evidence_recall is None) == (name in ("direct", "cot", "r1"))


class NoGenerator:
    """A generator that must not be called: with a local model the agentic methods run the engine."""

    name = "unused"

    def complete(self, transcripts, decoding, stop=None):
        raise AssertionError("ctx.generator was called; the agentic methods must use the rollout engine")


@pytest.mark.parametrize("name", ["search-o1", "search-r1"])
def test_agentic_methods_run_the_engine_on_a_local_model(name, tiny_lm, retriever, single_hop):
    model, tok = tiny_lm
    ctx = EvalContext(NoGenerator(), retriever, topk=2, decoding=Decoding(max_new_tokens=6), max_turns=2,
                      model=model, tokenizer=tok)
    preds = get_method(name).run(single_hop[:2], ctx, dataset="w")
    for p in preds:
        assert p.finish_reason in ("answer", "eos", "max_turns", "budget") and 1 <= p.turns <= 2
        assert p.segments[0][0] == "model" and "".join(text for _, text in p.segments) == p.response
        sampled = sum(len(tok.encode(text, add_special_tokens=False)) for src, text in p.segments if src == "model")
        assert p.response_tokens >= sampled > 0          # search-o1 adds its reason-in-documents tokens


def test_search_o1_reasoning_so_far_includes_injected_text(single_hop, gold, retriever, scripted):
    """The reason-in-documents prompt shows the response so far, as the engine built it."""
    def script(prompt, response):
        if prompt.startswith("Read the searched documents"):
            return "Nothing.\n\n"
        q = gold[question_of(prompt)]
        if not response:
            return "First thoughts and no action, " * 3
        if "<information>" not in response:
            return f"<search> {q.metadata['subject']} </search>"
        return "<answer> x </answer>"

    ctx = EvalContext(gen := scripted(script), retriever, decoding=Decoding(max_new_tokens=6))
    p = get_method("search-o1").run(single_hop[:1], ctx, dataset="w")[0]
    condense_prompt = next(c[0] for c in gen.calls if c[0].startswith("Read the searched documents"))
    reasoning = condense_prompt.split("Reasoning so far: ")[1].split("\nSearch query:")[0]
    assert reasoning == (p.segments[0][1] + INVALID_ACTION_TEXT + p.segments[2][1]).strip()
    assert p.invalid_actions == 1 and p.searches == 1 and p.answer == "x"
    assert information("Nothing.") in p.response


def test_model_text_leaves_out_injected_text_and_special_tokens(tiny_lm):
    from searchr1.eval.methods.rollout_bridge import model_text
    from searchr1.rollout.types import Trajectory

    _, tok = tiny_lm
    said, injected = tok.encode("So the answer is Paris", add_special_tokens=False), tok.encode("<information>x")
    t = Trajectory(prompt_ids=[1], response_ids=injected + said + [tok.eos_token_id],
                   response_mask=[0] * len(injected) + [1] * (len(said) + 1))
    assert model_text(t, tok) == "So the answer is Paris"
    assert get_method("search-o1").extract(model_text(t, tok)) == ("Paris", "answer-is")
