"""Bad inputs to the search commands: exit code and one line naming the problem, never a traceback.

Each row runs ``searchr1.cli.main(argv)`` on prepared files; ``{idx}`` is a good BM25 index,
``{corpus}`` its corpus, ``{tmp}`` a scratch directory. Nothing here starts a server: every
``serve`` row fails before binding.
"""
import json
import shutil

import pytest

from searchr1.cli import main
from searchr1.search.base import Document
from searchr1.search.corpus import write_corpus_jsonl
from searchr1.search.index import build_index


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_docs):
    d = tmp_path_factory.mktemp("cli_errors")
    write_corpus_jsonl(tiny_docs, d / "corpus.jsonl")
    build_index(d / "corpus.jsonl", d / "idx")
    (d / "empty.jsonl").write_text("")
    write_corpus_jsonl([*tiny_docs, Document("d1", "Copy", "a passage reusing the id d1")], d / "dup.jsonl")
    (d / "a_file").write_text("x")
    for name, edit in [("unknown_key", ("bm25.json", lambda m: {**m, "k3": 1.0})),
                       ("future_format", ("index.json", lambda m: {**m, "format": 99})),
                       ("no_format", ("index.json", lambda m: {k: v for k, v in m.items() if k != "format"}))]:
        shutil.copytree(d / "idx", d / name)
        path = d / name / edit[0]
        path.write_text(json.dumps(edit[1](json.loads(path.read_text()))))
    return d


CASES = [
    # argv, env, exit code, substring of the one-line message
    (["serve", "--index", "{idx}", "--port", "99999"], {}, 2, "--port 99999 is out of range"),
    (["serve", "--index", "{idx}", "--port", "-1"], {}, 2, "1-65535"),
    (["serve", "--index", "{idx}", "--token", ""], {}, 2, "--token is empty"),
    (["serve", "--index", "{idx}"], {"SEARCHR1_TOKEN": ""}, 2, "SEARCHR1_TOKEN is set but empty"),
    (["serve", "--index", "{tmp}/nope"], {}, 1, "no index.json"),
    (["serve", "--index", "{tmp}/future_format"], {}, 2, "index format 99"),
    (["serve", "--index", "{idx}", "--max-queries", "0"], {}, 2, "max_queries"),
    (["serve", "--index", "{idx}", "--default-topk", "500"], {}, 2, "default_topk"),
    (["index", "--corpus", "{corpus}", "--out", "{tmp}/a_file"], {}, 2, "is a file, not a directory"),
    (["index", "--corpus", "{tmp}/empty.jsonl", "--out", "{tmp}/e"], {}, 1, "has no passages"),
    (["index", "--corpus", "{tmp}/dup.jsonl", "--out", "{tmp}/d"], {}, 1, "'d1' appears twice"),
    (["index", "--corpus", "{tmp}/missing.jsonl", "--out", "{tmp}/m"], {}, 1, "corpus file not found"),
    (["index", "--corpus", "{corpus}", "--out", "{tmp}/f", "--faiss", "ivf"], {}, 2, "applies to --retriever dense"),
    (["index", "--retriever", "dense", "--corpus", "{corpus}", "--out", "{tmp}/f", "--faiss", "IVFX,PQ"], {}, 2,
     "not a FAISS index_factory string"),
    (["index", "--retriever", "dense", "--corpus", "{corpus}", "--out", "{tmp}/f", "--faiss", "x.index"], {}, 2,
     "looks like a file"),
    (["index", "--retriever", "qdrant", "--corpus", "{corpus}", "--out", "{tmp}/q"], {}, 2, "--qdrant-url goes with"),
    (["search", "--index", "{idx}", "--nprobe", "8", "q"], {}, 2, "apply to dense indexes only"),
    (["serve", "--index", "{idx}", "--mmap", "--faiss-gpu"], {}, 2, "mmap and gpu exclude each other"),
    (["serve", "--backend", "web:serper", "--nprobe", "8"], {}, 2, "apply to a local index"),
    (["index", "import", "--corpus", "{corpus}", "--out", "{tmp}/i"], {}, 2, "needs --faiss"),
    (["index", "import", "--corpus", "{corpus}", "--out", "{tmp}/i", "--faiss", "{tmp}/x.index"], {}, 2,
     "needs --encoder"),
    (["index", "import", "--corpus", "{corpus}", "--out", "{tmp}/i", "--faiss", "{tmp}/x.index",
      "--encoder", "intfloat/e5-base-v2"], {}, 2, "no such file"),
    (["search", "--index", "{idx}", "--topk", "0", "capital"], {}, 2, "--topk 0"),
    (["search", "--index", "{tmp}/unknown_key", "capital"], {}, 2, "unknown key(s) ['k3']"),
    (["search", "--index", "{tmp}/future_format", "capital"], {}, 2, "not the format 1"),
    (["search", "--index", "{tmp}/no_format", "capital"], {}, 2, "index format None"),
    (["search", "--index", "{tmp}/nope", "capital"], {}, 1, "no index.json"),
]


@pytest.mark.parametrize("argv, env, code, needle", CASES, ids=[" ".join(c[0][:2]) + f" {i}" for i, c in
                                                                  enumerate(CASES)])
def test_bad_cli_input(files, argv, env, code, needle, capsys, monkeypatch):
    monkeypatch.delenv("SEARCHR1_TOKEN", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    paths = {"idx": files / "idx", "corpus": files / "corpus.jsonl", "tmp": files}
    assert main([a.format(**paths) for a in argv]) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]  # (progress bars go there too)
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
