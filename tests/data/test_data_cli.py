"""`searchr1 data convert|show` through the data area's own parser."""
import argparse

import pyarrow.parquet as pq

from searchr1.data import cli
from searchr1.data.qa import QAExample, read_flashrag_jsonl, write_flashrag_jsonl

EXAMPLES = [QAExample("a", "Wer schrieb Faust", ["Goethe"], {"k": "ü"}),
            QAExample("b", "capital of Peru?", ["Lima"], {})]


def run(*argv):
    parser = argparse.ArgumentParser(prog="searchr1")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_convert_both_ways(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_flashrag_jsonl(EXAMPLES, src)
    assert run("data", "convert", str(src), str(tmp_path / "out.parquet"), "--data-source", "musique") == 0
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["data_source"] for r in rows] == ["musique", "musique"]
    assert rows[0]["prompt"][0]["content"].endswith("Question: Wer schrieb Faust?\n")
    assert run("data", "convert", str(tmp_path / "out.parquet"), str(tmp_path / "back.txt"),
               "--to", "flashrag-jsonl", "--limit", "1") == 0
    assert read_flashrag_jsonl(tmp_path / "back.txt") == EXAMPLES[:1]
    assert "wrote 1 examples" in capsys.readouterr().out


def test_convert_errors_are_messages(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_flashrag_jsonl(EXAMPLES, src)
    assert run("data", "convert", str(src), str(tmp_path / "out.csv")) == 1
    assert "name it .parquet or .jsonl" in capsys.readouterr().err
    src.write_text('{"question": "q", "golden_answers": []}\n', encoding="utf-8")
    assert run("data", "convert", str(src), str(tmp_path / "o.jsonl")) == 1
    assert "row 1: field 'golden_answers' is empty" in capsys.readouterr().err


def test_show(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    write_flashrag_jsonl(EXAMPLES, src)
    assert run("data", "show", str(src), "--limit", "1") == 0
    out = capsys.readouterr()
    assert "[a] Wer schrieb Faust" in out.out and "Goethe" in out.out and "Lima" not in out.out
    assert run("data", "show", str(src), "--json") == 0
    assert '"k": "ü"' in capsys.readouterr().out
    assert run("data") == 2
