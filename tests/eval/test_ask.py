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
