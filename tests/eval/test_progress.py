"""Evaluation progress: every batch reports done/total, this run's elapsed time and an ETA per method."""
from __future__ import annotations

from searchr1.data.load import load_qa
from searchr1.eval.manifest import dataset_protocol, index_protocol
from searchr1.eval.runner import EvalConfig, Progress, evaluate
from searchr1.eval.types import EvalContext


def test_progress_reports_eta_per_method(world, retriever, tmp_path, scripted):
    exs = load_qa(world["dir"] / "test.jsonl", limit=5)
    ctx = EvalContext(scripted(lambda prompt, response: "<answer> x </answer>"), retriever, topk=2)
    seen: list[Progress] = []
    evaluate({"world-test": exs}, ctx, EvalConfig(methods=["direct", "rag"], batch_size=2), tmp_path,
             {"name": "scripted", "revision": None}, index_protocol(world["index"]),
             [dataset_protocol("world-test", exs, "test.jsonl", 5)], progress=seen.append)
    for method in ("direct", "rag"):
        rows = [p for p in seen if p.method == method]
        assert [p.done for p in rows] == [2, 4, 5] and all(p.total == 5 for p in rows)
        assert rows[-1].eta == 0.0 and all(p.eta is not None and p.eta >= 0 for p in rows)
        assert [p.elapsed for p in rows] == sorted(p.elapsed for p in rows)
    line = seen[0].line()
    assert "direct world-test: 2/5" in line and "elapsed" in line and "ETA" in line


def test_clock_format():
    assert Progress("m", "d", 1, 2, 61.2, 3725.0).line().endswith("(1:01 elapsed, ETA 1:02:05)")


class _Down:
    """A retriever whose every search fails (a retrieval outage)."""

    def search(self, queries, topk):
        from searchr1.search.base import SearchError

        raise SearchError("connection refused")


def test_failed_searches_are_reported_and_retried_on_resume(world, retriever, tmp_path, scripted):
    exs = load_qa(world["dir"] / "test.jsonl", limit=3)
    gen = scripted(lambda prompt, response: "<answer> x </answer>")

    def run(r):
        ctx = EvalContext(gen, r, topk=2)
        return evaluate({"world-test": exs}, ctx, EvalConfig(methods=["direct", "rag"], batch_size=2), tmp_path,
                        {"name": "scripted", "revision": None}, index_protocol(world["index"]),
                        [dataset_protocol("world-test", exs, "test.jsonl", 3)])

    res = run(_Down())
    assert res["summary"]["rag"]["world-test"]["failed_searches"] == 3
    assert res["summary"]["direct"]["world-test"]["failed_searches"] == 0
    md = (tmp_path / "results.md").read_text()
    assert "3 searches failed, in 3 predictions" in md and "failed searches/q" in md
    res = run(retriever)   # retrieval is back: only the 3 rag predictions run again
    assert res["summary"]["rag"]["world-test"]["failed_searches"] == 0
    assert len(res["predictions"]) == 6 and "searches failed" not in (tmp_path / "results.md").read_text()
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 9   # nothing is deleted: the failed predictions stay on disk, superseded


def test_per_method_token_budgets_reach_the_generator_and_the_manifest(world, retriever, tmp_path, scripted):
    from searchr1.eval.runner import MAX_NEW_TOKENS

    exs = load_qa(world["dir"] / "test.jsonl", limit=2)
    inner = scripted(lambda prompt, response: "<answer> x </answer>")
    budgets = []

    class Recording:
        name = "recording"

        def complete(self, transcripts, decoding, stop=None):
            budgets.append(decoding.max_new_tokens)
            return inner.complete(transcripts, decoding, stop)

    def run(config, out):
        return evaluate({"world-test": exs}, EvalContext(Recording(), retriever, topk=2), config, out,
                        {"name": "scripted", "revision": None}, index_protocol(world["index"]),
                        [dataset_protocol("world-test", exs, "test.jsonl", 2)])

    res = run(EvalConfig(methods=["direct", "cot"]), tmp_path / "a")
    assert budgets == [MAX_NEW_TOKENS["direct"], MAX_NEW_TOKENS["cot"]]
    methods = res["manifest"]["methods"]
    assert (methods["direct"]["max_new_tokens"], methods["cot"]["max_new_tokens"]) == (32, 128)
    budgets.clear()
    run(EvalConfig(methods=["direct", "cot"], max_new_tokens=16), tmp_path / "b")
    assert budgets == [16, 16]


def test_eval_retriever_token_dead_server_and_outage(world, retriever, tmp_path, scripted, capsys):
    import pytest

    from searchr1.cli import main
    from searchr1.eval.setup import make_retriever
    from searchr1.search.base import SearchAuthError
    from searchr1.search.guard import GuardedRetriever, RetrievalOutage
    from searchr1.search.server import BackgroundServer, ServerConfig, create_app

    with BackgroundServer(create_app(retriever, ServerConfig(token="s3cret"))) as srv:
        with pytest.raises(SearchAuthError, match="--token"):
            make_retriever(server=srv.url)
        client, info = make_retriever(server=srv.url, token="s3cret")
        assert client.search(["Where was anyone born?"], 1)[0] and info["location"]["url"] == srv.url
    rc = main(["eval", "--data", str(world["dir"] / "test.jsonl"), "--out", str(tmp_path / "dead"), "--limit", "2",
               "--methods", "rag", "--server", "http://127.0.0.1:9"])
    assert rc == 1 and "did not answer /health" in capsys.readouterr().err
    exs = load_qa(world["dir"] / "test.jsonl", limit=6)
    ctx = EvalContext(scripted(lambda p, r: "<answer> x </answer>"), GuardedRetriever(_Down(), "abort", 3), topk=2)
    with pytest.raises(RetrievalOutage):
        evaluate({"world-test": exs}, ctx, EvalConfig(methods=["rag"], batch_size=2), tmp_path / "out",
                 {"name": "scripted", "revision": None}, index_protocol(world["index"]),
                 [dataset_protocol("world-test", exs, "test.jsonl", 6)])
