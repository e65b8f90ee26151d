"""``ask``: the live view prints think, each search with its retrieved titles, and the answer."""
import io

from rich.console import Console

from searchr1.eval.ask import LivePrinter, ask
from searchr1.eval.types import EvalContext


def test_ask_prints_the_trajectory_as_it_unfolds(world, retriever, scripted):
    ex = next(q for q in world["world"].questions if q.metadata["relation"] == "birthplace")
    subject, gold = ex.metadata["subject"], ex.golden_answers[0]
    printed_before_second_turn = []

    def script(prompt, response):
        if "<information>" not in response:
            return f"<think>I should look up {subject}.</think>\n<search> {subject} </search>"
        printed_before_second_turn.append(console.export_text(clear=False))
        return f"<think>The passage says it.</think>\n<answer> {gold} </answer>"

    console = Console(record=True, width=200, file=io.StringIO())
    result = ask(ex.question, EvalContext(scripted(script), retriever, topk=2), live=LivePrinter(console))
    text = console.export_text()
    assert f"think  I should look up {subject}." in text
    assert f"search {subject}" in text and f"answer {gold}" in text
    titles = [h["title"] for h in result["retrieved"][0]]
    assert len(titles) == 2 and all(t in text for t in titles)
    # the search and its titles were shown before the model's second turn ran
    assert f"search {subject}" in printed_before_second_turn[0] and titles[0] in printed_before_second_turn[0]
    assert result["answer"] == gold and result["searches"] == 1 and result["queries"] == [subject]


KEYS = {"question", "answer", "finish_reason", "turns", "searches", "queries", "retrieved", "response_tokens",
        "invalid_actions", "segments"}


def test_ask_runs_the_engine_on_a_local_model(world, retriever, tiny_lm):
    """A local model goes through the engine's HFBackend (the generator is never called); the live
    view gets one "turn" event per turn and the result has the --json keys."""
    from searchr1.models.generate import Decoding

    class NoGenerator:
        name = "unused"

        def complete(self, *args, **kwargs):
            raise AssertionError("ask must run the rollout engine on a local model")

    model, tok = tiny_lm
    ex = world["world"].questions[0]
    events = []
    ctx = EvalContext(NoGenerator(), retriever, topk=2, decoding=Decoding(max_new_tokens=5), max_turns=2,
                      model=model, tokenizer=tok)
    result = ask(ex.question, ctx, live=lambda row, kind, payload: events.append((row, kind)))
    assert set(result) == KEYS and result["question"] == ex.question
    assert [k for _, k in events].count("turn") == result["turns"] >= 1 and {r for r, _ in events} == {0}
    assert result["segments"][0][0] == "model" and 0 < result["response_tokens"] <= 10
    assert result["searches"] == len(result["retrieved"]) == len(result["queries"])


def test_ask_uses_the_demos_index_when_none_is_given(world, tiny_model_dir, tmp_path, monkeypatch, capsys):
    import json as _json
    import shutil

    from searchr1.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["ask", "Where?", "--model", str(tiny_model_dir), "--json"]) == 2
    assert "--index DIR or --server URL" in capsys.readouterr().err
    shutil.copytree(world["index"], tmp_path / "runs" / "demo" / "world" / "index")
    assert main(["ask", "Where was anyone born?", "--model", str(tiny_model_dir), "--json", "--max-turns", "1",
                 "--max-new-tokens", "4"]) == 0
    out = _json.loads(capsys.readouterr().out)
    assert out["question"] == "Where was anyone born?" and "turns" in out
