"""The evaluation runner: report files, resume, protocol manifests and the CLI."""
from __future__ import annotations

import json

import pytest

from searchr1.cli import main
from searchr1.eval.manifest import compare_manifests, load_manifest
from searchr1.eval.runner import PREDICTIONS, EvalConfig, evaluate
from searchr1.eval.types import EvalContext
from searchr1.search.guard import RetrievalOutage

from .conftest import question_of

METHODS = ["direct", "rag", "search-r1"]


def oracle(prompt, response):
    """Answers with the first document title it sees, else 'unknown' (always a valid action)."""
    import re

    titles = re.findall(r"Doc 1\(Title: \"?([^\")]+)", prompt + response)
    if "<search>" in prompt and not response:
        return f"<search> {question_of(prompt)} </search>"
    return f"<answer> {titles[0] if titles else 'unknown'} </answer>"


def run(world, retriever, out, gen, topk=2, methods=METHODS, limit=4):
    from searchr1.data.load import load_qa
    from searchr1.eval.manifest import dataset_protocol, index_protocol

    exs = load_qa(world["dir"] / "test.jsonl", limit=limit)
    ctx = EvalContext(gen, retriever, topk=topk)
    info = {"name": "scripted", "revision": None}
    return evaluate({"world-test": exs}, ctx, EvalConfig(methods=methods, batch_size=2), out, info,
                    index_protocol(world["index"]), [dataset_protocol("world-test", exs, "test.jsonl", limit)])


def test_report_files_and_manifest(world, retriever, tmp_path, scripted):
    res = run(world, retriever, tmp_path, scripted(oracle))
    assert len(res["predictions"]) == 3 * 4
    md = (tmp_path / "results.md").read_text()
    assert "| method | world-test | average |" in md and all(f"| {m} |" in md for m in METHODS)
    assert md.index("## EM") < md.index("## F1") and "## evidence recall" in md
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = res["manifest"]
    assert m["retriever"]["corpus_sha256"] and m["retriever"]["kind"] == "bm25" and m["topk"] == 2
    assert m["decoding"]["greedy"] and set(m["methods"]) == set(METHODS)
    assert m["methods"]["search-r1"]["templates"]["search-r1"]
    s = res["summary"]["search-r1"]["world-test"]
    assert s["n"] == 4 and s["searches"] == 1.0 and s["turns"] == 2.0 and s["invalid_rate"] == 0.0
    preds = {(p["method"], p["id"]): p for p in res["predictions"]}
    assert all(p["segments"] for p in preds.values())


def test_resume_runs_only_missing_questions(world, retriever, tmp_path, scripted):
    run(world, retriever, tmp_path, scripted(oracle))
    path = tmp_path / PREDICTIONS
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n" + lines[-3][: len(lines[-3]) // 2])  # crash mid-write
    gen = scripted(oracle)
    res = run(world, retriever, tmp_path, gen)
    assert len(res["predictions"]) == 12
    assert len({(p["method"], p["id"]) for p in res["predictions"]}) == 12
    # only search-r1 lost rows: 3 questions x 2 turns of generation, nothing else re-ran
    assert len(gen.calls) == 3 * 2 and all("<search>" in c[0] for c in gen.calls)
    again = scripted(oracle)
    run(world, retriever, tmp_path, again, limit=6)  # a larger --limit resumes too
    assert len(again.calls) == 2 * (1 + 1 + 2)


def test_resume_refuses_another_protocol(world, retriever, tmp_path, scripted):
    run(world, retriever, tmp_path, scripted(oracle))
    with pytest.raises(ValueError, match="topk"):
        run(world, retriever, tmp_path, scripted(oracle), topk=3)


def test_compare_names_the_differing_fields(world, retriever, tmp_path, scripted, capsys):
    run(world, retriever, tmp_path / "a", scripted(oracle))
    run(world, retriever, tmp_path / "b", scripted(oracle), methods=["direct"])
    run(world, retriever, tmp_path / "c", scripted(oracle), topk=3)
    a, b, c = (load_manifest(tmp_path / x / "results.json") for x in "abc")
    assert compare_manifests(a, b) == []            # b covers fewer methods, same protocol
    assert [k for k, _, _ in compare_manifests(a, c)] == ["topk"]
    assert main(["eval", "--compare", str(tmp_path / "a/results.json"), str(tmp_path / "b/results.json")]) == 0
    assert "protocols match" in capsys.readouterr().out
    assert main(["eval", "--compare", str(tmp_path / "a/results.json"), str(tmp_path / "c/manifest.json")]) == 1
    out = capsys.readouterr().out
    assert "topk" in out and "A: 2" in out and "B: 3" in out


def test_cli_eval_and_ask_with_a_local_model(world, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["eval", "--data", str(world["dir"] / "test.jsonl"), "--index", str(world["index"]),
               "--model", str(tiny_model_dir), "--methods", "direct,search-r1", "--limit", "2",
               "--max-new-tokens", "6", "--max-turns", "2", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert {p["method"] for p in res["predictions"]} == {"direct", "search-r1"}
    assert res["manifest"]["model"]["weights_sha256"] and "| direct |" in capsys.readouterr().out
    rc = main(["ask", "Where was anyone born?", "--index", str(world["index"]), "--model", str(tiny_model_dir),
               "--max-new-tokens", "6", "--max-turns", "2", "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["question"] == "Where was anyone born?" and result["turns"] >= 1 and result["segments"]


def test_default_model_prefers_the_newest_checkpoint(tmp_path, tiny_model_dir):
    import shutil

    from searchr1.eval.setup import default_model

    assert default_model(tmp_path / "runs") == "smollm2-135m"
    shutil.copytree(tiny_model_dir, tmp_path / "runs/demo/checkpoint")
    shutil.copytree(tiny_model_dir, tmp_path / "runs/x/checkpoints/step_000002/policy")  # not COMPLETE
    assert default_model(tmp_path / "runs") == str(tmp_path / "runs/demo/checkpoint")


def test_retrieval_server_as_the_retriever(world, retriever, scripted):
    """--server: the HTTP client against the real retrieval app, on loopback."""
    import socket
    import threading
    import time

    import uvicorn

    from searchr1.eval.methods import get_method
    from searchr1.eval.setup import make_retriever
    from searchr1.search.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(retriever, kind="bm25"), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(250):
            if server.started:
                break
            time.sleep(0.02)
        client, info = make_retriever(server=f"http://127.0.0.1:{port}")
        assert info["kind"] == "bm25" and info["num_passages"] == len(retriever)
        ex = next(q for q in world["world"].questions if q.metadata["relation"] == "birthplace")
        gen = scripted(lambda p, r: "<answer> x </answer>")
        via_http = get_method("rag").run([ex], EvalContext(gen, client, topk=3), "w")[0]
        local = get_method("rag").run([ex], EvalContext(gen, retriever, topk=3), "w")[0]
        assert via_http.retrieved_ids == local.retrieved_ids and via_http.search_failures == 0
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    with pytest.raises(RetrievalOutage, match="searchr1 serve"):
        make_retriever(server=f"http://127.0.0.1:{port}")
