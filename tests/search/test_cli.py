import json

from searchr1.cli import main
from searchr1.search.corpus import load_corpus, write_corpus_jsonl


def _run(argv):
    return main(argv)


def test_index_and_search_commands(tmp_path, tiny_docs, capsys):
    corpus = tmp_path / "c.jsonl"
    write_corpus_jsonl(tiny_docs, corpus)
    assert _run(["index", "--corpus", str(corpus), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert _run(["search", "--index", str(tmp_path / "idx"), "highest mountain", "--topk", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["result"][0][0]["document"]["id"] == "d3" and isinstance(out["result"][0][0]["score"], float)
    assert _run(["search", "--index", str(tmp_path / "idx"), "the of"]) == 0
    assert "no passage" in capsys.readouterr().out


def test_corpus_commands(tmp_path, capsys):
    out = tmp_path / "wiki.jsonl"
    assert _run(["corpus", "wiki", "--out", str(out)]) == 0
    assert len(load_corpus(out)) > 10_033
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "contents": "x"}\n{"id": 2}\n')
    assert _run(["corpus", "stats", str(bad)]) == 1
    assert f"{bad}:2" in capsys.readouterr().err
    assert _run(["index", "--corpus", str(bad), "--out", str(tmp_path / "i")]) == 1
