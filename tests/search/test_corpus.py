import json

import pytest

from searchr1.search.base import Document
from searchr1.search.corpus import (CorpusError, iter_corpus, load_corpus, parse_contents, write_corpus_jsonl,
                                    write_corpus_parquet)
from searchr1.search.corpus_build import chunk_words, iter_wiki_passages, synthetic_corpus


@pytest.mark.parametrize("contents, expected", [
    ('"Title"\nbody text', ("Title", "body text")),
    ('Title\nbody', ("Title", "body")),                       # unquoted first line is still the title
    ('""Quoted""\nbody', ('"Quoted"', "body")),              # only one pair of quotes is removed
    ('"T"\nline1\nline2', ("T", "line1\nline2")),            # text keeps later newlines
    ("no newline at all", ("", "no newline at all")),        # documented: no title, text kept whole
    ('"Only title"\n', ("Only title", "")),
    ('"', ("", '"')),
])
def test_parse_contents(contents, expected):
    assert parse_contents(contents) == expected


def test_jsonl_formats_and_roundtrip(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text("\n".join([
        json.dumps({"id": "a", "contents": '"Alpha"\nfirst'}),
        "",
        json.dumps({"id": 7, "title": "Beta", "text": "second"}),
        json.dumps({"id": "c", "title": None, "text": "third"}),
    ]) + "\n")
    docs = load_corpus(p)
    assert docs == [Document("a", "Alpha", "first"), Document("7", "Beta", "second"), Document("c", "", "third")]
    out = tmp_path / "out.jsonl"
    assert write_corpus_jsonl(docs, out) == 3
    assert load_corpus(out) == docs
    assert json.loads(out.read_text().splitlines()[0]) == {"id": "a", "contents": '"Alpha"\nfirst'}


def test_parquet_streams_in_row_groups(tmp_path):
    docs = [Document(str(i), f"T{i}", f"text {i}") for i in range(25)]
    p = tmp_path / "c.parquet"
    assert write_corpus_parquet(docs, p, row_group_size=4) == 25
    assert list(iter_corpus(p, batch_size=3)) == docs


@pytest.mark.parametrize("line, problem", [
    ('{"id": 1, "contents": "x"', "invalid JSON"),
    ('{"contents": "\\"T\\"\\nx"}', "no 'id'"),
    ('{"id": 1}', "neither 'contents' nor 'text'"),
    ('{"id": 1, "contents": 5}', "'contents' must be a string"),
    ('[1, 2]', "expected a JSON object"),
    ('{"id": [1], "text": "x"}', "'id' must be a string or an integer"),
])
def test_malformed_row_names_file_line_and_problem(tmp_path, line, problem):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"id": 0, "contents": '"ok"\nfine'}) + "\n" + line + "\n")
    with pytest.raises(CorpusError) as e:
        load_corpus(p)
    assert f"{p}:2" in str(e.value) and problem in str(e.value)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nope.jsonl")
    (tmp_path / "c.csv").write_text("id,text\n")
    with pytest.raises(CorpusError, match="unknown corpus format"):
        load_corpus(tmp_path / "c.csv")


def test_chunk_words_even_split():
    text = " ".join(f"w{i}" for i in range(250))
    chunks = chunk_words(text, 100)
    assert [len(c.split()) for c in chunks] == [84, 84, 82]
    assert " ".join(chunks) == text
    assert chunk_words("a b c", 100) == ["a b c"]
    assert chunk_words("   ", 100) == []


def test_wiki_passages_keep_titles():
    docs = list(iter_wiki_passages(100))
    assert len(docs) > 10_033  # every article gives at least one passage, long ones several
    assert [d.id for d in docs[:3]] == ["0", "1", "2"]
    odyssey = [d for d in docs if d.title == "2001: A Space Odyssey"]
    assert odyssey and "Kubrick" in odyssey[0].text
    assert max(len(d.text.split()) for d in docs) < 160


def test_synthetic_corpus_is_deterministic():
    a, b = synthetic_corpus(50, words=20, seed=3), synthetic_corpus(50, words=20, seed=3)
    assert a == b and a != synthetic_corpus(50, words=20, seed=4)
    assert all(len(d.text.split()) == 20 for d in a)
