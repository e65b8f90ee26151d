"""The engine with a scripted policy (exact texts, masks, counters) and a fake retriever."""
from pathlib import Path

import pytest

from searchr1.rollout import INVALID_ACTION_TEXT, RolloutConfig, RolloutEngine, rollout_metrics
from searchr1.rollout.backends.scripted import ScriptedBackend
from searchr1.protocol import information

from searchr1.search.base import SearchError

from .conftest import FakeRetriever

GOLDEN = Path(__file__).parent / "golden"
PROMPT = "Question: who wrote Hamlet?\n"


def run(tok, scripts, retriever=None, prompts=None, **cfg):
    backend = ScriptedBackend(tok, scripts)
    retriever = retriever if retriever is not None else FakeRetriever()
    engine = RolloutEngine(backend, retriever, tok, RolloutConfig(**cfg))
    trajs = engine.run(prompts or [PROMPT] * len(scripts))
    return trajs, backend.sessions[-1], retriever


def sampled_text(tok, traj):
    return tok.decode([t for t, m in zip(traj.response_ids, traj.response_mask) if m])


def check_invariants(traj):
    n = len(traj.response_ids)
    assert len(traj.response_mask) == n and set(traj.response_mask) <= {0, 1}
    if traj.response_logprobs is not None:
        assert len(traj.response_logprobs) == n
        assert all(lp == 0.0 for lp, m in zip(traj.response_logprobs, traj.response_mask) if not m)


def test_golden_full_trajectory(tok):
    script = [
        "<think> I need to look it up. </think>\n<search> Hamlet author </search>",
        "<think> The passages do not say. </think> Let me think more",
        "<think> It was Shakespeare. </think>\n<answer> William Shakespeare </answer>",
    ]
    (t,), session, retriever = run(tok, [script], topk=2)
    assert t.response_text == (GOLDEN / "search_invalid_answer.txt").read_text()
    assert (t.answer, t.finish_reason, t.turns, t.searches) == ("William Shakespeare", "answer", 3, 1)
    assert (t.valid_actions, t.invalid_actions, t.search_failures) == (2, 1, 0)
    assert t.queries == ["Hamlet author"]
    assert t.retrieved_ids == [["Hamlet-author#1", "Hamlet-author#2"]]
    assert retriever.calls == [["Hamlet author"]]
    # masks from provenance: the sampled tokens are exactly the three scripted turns, in order
    assert sampled_text(tok, t) == "".join(script)
    emitted = [i for turn in session.emitted[0] for i in turn]
    assert [i for i, m in zip(t.response_ids, t.response_mask) if m] == emitted
    assert t.response_logprobs == [-1.0 if m else 0.0 for m in t.response_mask]
    # the backend saw prompt + response, token for token (nothing re-encoded)
    assert session.contexts[0] == t.prompt_ids + t.response_ids
    check_invariants(t)


def test_answer_in_first_turn(tok):
    (t,), _, retriever = run(tok, [["<think> easy </think><answer> Shakespeare </answer> extra words"]])
    assert (t.answer, t.finish_reason, t.turns, t.searches) == ("Shakespeare", "answer", 1, 0)
    assert t.response_text.endswith("</answer>")  # nothing sampled past the stop string
    assert all(t.response_mask) and retriever.calls == []


def test_no_tags_gets_corrective_text_then_max_turns(tok):
    (t,), _, _ = run(tok, [["just words"] * 5], max_turns=3)
    assert t.finish_reason == "max_turns" and t.answer is None
    assert (t.turns, t.invalid_actions, t.valid_actions) == (3, 3, 0)
    assert t.response_text == ("just words" + INVALID_ACTION_TEXT) * 2 + "just words"


def test_unclosed_search_and_empty_query_are_invalid(tok):
    script = ["<search> unclosed query", "<search>   </search>", "<answer> A </answer>"]
    (t,), _, retriever = run(tok, [script])
    assert (t.invalid_actions, t.searches, t.answer, t.turns) == (2, 0, "A", 3)
    assert retriever.calls == []
    assert t.response_text.count(INVALID_ACTION_TEXT) == 2


def test_two_searches_in_one_turn_first_wins_and_stops(tok):
    (t,), _, retriever = run(tok, [["<search> first </search><search> second </search>", "<answer> A </answer>"]])
    assert t.queries == ["first"] and retriever.calls == [["first"]]
    assert "second" not in t.response_text  # generation stopped at the first </search>


def test_too_long_query_is_truncated_and_recorded(tok):
    long_q = "very " * 40 + "long"
    (t,), _, retriever = run(tok, [[f"<search> {long_q} </search>", "<answer> A </answer>"]], max_query_chars=30)
    assert len(retriever.calls[0][0]) <= 30 and long_q.startswith(retriever.calls[0][0])
    assert t.truncated["query_chars"] == len(long_q) - 30


def test_eos_before_any_answer(tok):
    (t,), _, _ = run(tok, [["<think> I give up </think>" + tok.eos_token, "<answer> never </answer>"]])
    assert (t.finish_reason, t.answer, t.turns, t.invalid_actions) == ("eos", None, 1, 1)
    assert t.response_ids[-1] == tok.eos_token_id and t.response_mask[-1] == 1


def test_last_turn_disables_search(tok):
    script = ["<search> q1 </search>", "<search> q2 </search> then <answer> late </answer>"]
    (t,), _, retriever = run(tok, [script], max_turns=2)
    # on the last turn </search> is no stop: the row goes on and its answer counts
    assert retriever.calls == [["q1"]] and (t.answer, t.finish_reason) == ("late", "answer")
    (t,), _, retriever = run(tok, [["<search> q1 </search>", "<search> q2 </search> and nothing"]], max_turns=2)
    assert retriever.calls == [["q1"]] and (t.answer, t.finish_reason, t.searches) == (None, "max_turns", 1)


def test_rows_finish_at_different_turns_with_one_batched_search_per_turn(tok):
    scripts = [
        ["<answer> r0 </answer>"],
        ["<search> a1 </search>", "<answer> r1 </answer>"],
        ["<search> b1 </search>", "<search> b2 </search>", "<answer> r2 </answer>"],
        ["<search> c1 </search>", "<search> c2 </search>", "<search> c3 </search>", "<answer> r3 </answer>"],
        ["x", "y", "z", "w"],
    ]
    trajs, session, retriever = run(tok, scripts, max_turns=4)
    assert [t.turns for t in trajs] == [1, 2, 3, 4, 4]
    assert [t.answer for t in trajs] == ["r0", "r1", "r2", "r3", None]
    assert [t.finish_reason for t in trajs] == ["answer"] * 4 + ["max_turns"]
    assert retriever.calls == [["a1", "b1", "c1"], ["b2", "c2"], ["c3"]]
    for i, t in enumerate(trajs):
        assert session.contexts[i] == t.prompt_ids + t.response_ids
        check_invariants(t)
    m = rollout_metrics(trajs)
    assert m["rollout/searches"] == pytest.approx(6 / 5) and m["rollout/finish_answer"] == pytest.approx(0.8)


def test_batch_of_64(tok):
    scripts = [[f"<search> q{i} </search>", f"<answer> a{i} </answer>"] if i % 2 else [f"<answer> a{i} </answer>"]
               for i in range(64)]
    trajs, _, retriever = run(tok, scripts, prompts=[f"Q{i}?" for i in range(64)])
    assert [t.answer for t in trajs] == [f"a{i}" for i in range(64)]
    assert len(retriever.calls) == 1 and retriever.calls[0] == [f"q{i}" for i in range(1, 64, 2)]


def test_search_failure_is_an_observation_and_a_counter(tok):
    (t,), _, _ = run(tok, [["<search> q </search>", "<answer> A </answer>"]], retriever=FakeRetriever(fail=True))
    expected = information("search failed: retrieval server unreachable after 3 retries")
    assert expected in t.response_text
    assert (t.search_failures, t.searches, t.answer, t.retrieved_ids) == (1, 1, "A", [[]])


def test_observation_truncated_to_budget(tok):
    (t,), _, _ = run(tok, [["<search> q </search>", "<answer> A </answer>"]], max_obs_tokens=12)
    obs = [i for i, m in zip(t.response_ids, t.response_mask) if not m]
    assert len(obs) == 12 and t.truncated["obs"] > 0
    assert tok.decode(obs).startswith("\n\n<information>") and tok.decode(obs).endswith("</information>\n\n")


def test_total_budget_ends_row(tok):
    (t,), _, _ = run(tok, [["<search> q </search>", "<answer> A </answer>"]],
                     max_prompt_tokens=16, max_total_tokens=30)
    assert t.finish_reason == "budget" and t.answer is None
    assert len(t.prompt_ids) + len(t.response_ids) == 30 and t.truncated["total"] > 0


def test_prompt_truncation(tok):
    long_prompt = "word " * 50
    (t,), _, _ = run(tok, [["<answer> A </answer>"]], prompts=[long_prompt], max_prompt_tokens=10)
    assert len(t.prompt_ids) == 10 and t.truncated["prompt"] == len(tok.encode(long_prompt)) - 10
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        run(tok, [["<answer> A </answer>"]], prompts=[long_prompt], max_prompt_tokens=10, prompt_truncation="error")


def test_no_search_baseline(tok):
    (t,), _, retriever = run(tok, [["<search> q </search> <answer> A </answer>"]], search_enabled=False)
    assert retriever.calls == [] and t.answer == "A" and t.searches == 0


def test_config_validation():
    with pytest.raises(ValueError, match="do_sample=False"):
        RolloutConfig(temperature=0)
    with pytest.raises(ValueError, match="max_turns"):
        RolloutConfig(max_turns=0)
    with pytest.raises(ValueError, match="retriever is required"):
        RolloutEngine(ScriptedBackend.__new__(ScriptedBackend), None, None, RolloutConfig())


def test_without_logprobs_and_with_ids(tok):
    prompt_ids = tok.encode(PROMPT)
    backend = ScriptedBackend(tok, [["<answer> A </answer>"]])
    engine = RolloutEngine(backend, FakeRetriever(), tok, RolloutConfig(return_logprobs=False))
    (t,) = engine.run([prompt_ids], example_ids=["q1"], group_ids=[7])
    assert t.prompt_ids == prompt_ids and t.response_logprobs is None
    assert (t.example_id, t.group_id, t.answer) == ("q1", 7, "A")
    with pytest.raises(ValueError, match="one per prompt"):
        engine.run([prompt_ids], example_ids=["a", "b"])


def test_build_prompts_uses_the_search_r1_template(tok):
    from searchr1.data.prompts import make_prompt
    from searchr1.data.qa import QAExample
    from searchr1.rollout import build_prompts

    ex = QAExample(id="1", question="who wrote Hamlet", golden_answers=["Shakespeare"])
    assert build_prompts([ex, "capital of France?"], tok) == [make_prompt("who wrote Hamlet"),
                                                              make_prompt("capital of France?")]


def test_stop_token_carrying_extra_characters(tok):
    # "</search>\n\n" ends in the single token ">\n\n": it is kept whole (token-in/token-out)
    (t,), session, retriever = run(tok, [["<search> q </search>\n\nignored", "<answer> A </answer>"]])
    assert retriever.calls == [["q"]] and t.answer == "A"
    first_turn = session.emitted[0][0]
    assert tok.decode(first_turn) == "<search> q </search>\n\n"
    assert t.response_text.startswith("<search> q </search>\n\n\n\n<information>")


def test_segments_are_recorded_as_the_engine_goes(tok):
    from searchr1.protocol import segments_from_mask

    scripts = [["<search> a </search>", "no action", "<answer> A </answer>"], ["<answer> B </answer>"]]
    trajs, _, _ = run(tok, scripts, max_obs_tokens=12)
    for t in trajs:
        assert [s for _, s in t.segments] == [bool(k % 2 == 0) for k in range(len(t.segments))]
        assert "".join(text for text, _ in t.segments) == t.response_text
        rebuilt = segments_from_mask(t.response_ids, t.response_mask, lambda ids: tok.decode(ids))
        assert t.segments == rebuilt
        assert t.generated_tokens == sum(t.response_mask)
    assert len(trajs[0].segments) == 5 and trajs[0].segments[3] == (INVALID_ACTION_TEXT, False)


def test_observe_hook_replaces_the_body_and_events_arrive_in_order(tok):
    seen, events = [], []

    def observe(rows, queries, hits):
        seen.append((rows, queries, [[h.doc.id for h in hs] for hs in hits]))
        return [f"note for {q}" for q in queries]

    scripts = [["<think>x</think><search> a </search>", "<answer> A </answer>"],
               ["oops", "<search> b </search>", "<answer> B </answer>"]]
    backend = ScriptedBackend(tok, scripts)
    engine = RolloutEngine(backend, FakeRetriever(), tok, RolloutConfig(topk=2), observe=observe,
                           on_event=lambda row, kind, payload: events.append((row, kind, payload)))
    t0, t1 = engine.run([PROMPT] * 2)
    assert seen == [([0], ["a"], [["a#1", "a#2"]]), ([1], ["b"], [["b#1", "b#2"]])]
    assert information("note for a") in t0.response_text and "Passage" not in t0.response_text
    assert t0.retrieved_ids == [["a#1", "a#2"]]            # the hits are still recorded
    kinds = [(row, kind) for row, kind, _ in events]
    assert kinds == [(0, "turn"), (1, "turn"), (1, "invalid"), (1, "observation"), (0, "search"), (0, "observation"),
                     (0, "turn"), (0, "answer"), (1, "turn"), (1, "search"), (1, "observation"),
                     (1, "turn"), (1, "answer")]
    payloads = {(row, kind): p for row, kind, p in events}
    assert payloads[(0, "turn")]["text"] == "<answer> A </answer>"           # the last turn of row 0
    assert payloads[(0, "search")]["query"] == "a" and payloads[(0, "search")]["error"] is None
    assert [h.doc.id for h in payloads[(0, "search")]["hits"]] == ["a#1", "a#2"]
    assert payloads[(0, "answer")] == {"answer": "A"} and payloads[(1, "invalid")]["reason"]
    # every injected text is announced exactly as appended
    injected = ["".join(p["text"] for row, kind, p in events if row == r and kind == "observation") for r in (0, 1)]
    assert injected == ["".join(text for text, s in t.segments if not s) for t in (t0, t1)]


def test_a_failed_batched_search_is_retried_per_query(tok):
    class FailsOn(FakeRetriever):
        def search(self, queries, topk):
            self.calls.append(list(queries))
            if "bad" in queries:
                raise SearchError(f"cannot search {queries}")
            return FakeRetriever.search(FakeRetriever(), queries, topk)

    retriever = FailsOn()
    scripts = [["<search> good </search>", "<answer> A </answer>"], ["<search> bad </search>", "<answer> B </answer>"]]
    (t0, t1), _, _ = run(tok, scripts, retriever=retriever, topk=1)
    assert retriever.calls == [["good", "bad"], ["good"], ["bad"]]
    assert (t0.search_failures, t0.retrieved_ids) == (0, [["good#1"]])
    assert (t1.search_failures, t1.retrieved_ids) == (1, [[]])
    assert information("search failed: cannot search ['bad']") in t1.response_text
