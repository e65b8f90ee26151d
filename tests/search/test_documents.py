"""Your documents -> a corpus: each file type, titles, stable ids, overlap, skipped files, incremental rebuilds."""
from __future__ import annotations

import json
import os

import pytest

from searchr1.cli import main
from searchr1.search.corpus import CorpusError, load_corpus
from searchr1.search.documents import build_corpus, split_passages


def make_pdf(text: str, title: str | None = None) -> bytes:
    """A one-page PDF whose content stream shows ``text`` (Helvetica), with an Info title when given."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    if title:
        objs.append(f"<< /Title ({title}) >>".encode())
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    info = b" /Info %d 0 R" % len(objs) if title else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, info, xref)
    return out


@pytest.fixture
def docs_dir(tmp_path):
    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    long_words = " ".join(f"w{i}" for i in range(230))
    (d / "notes.txt").write_text("The support line is open on weekdays. " + long_words)
    (d / "guide.md").write_text("# Refund policy\n\nRefunds are issued within 14 days of purchase.\n")
    (d / "sub" / "faq.html").write_text("<html><head><title>FAQ</title><script>var x=1;</script></head>"
                                       "<body><h1>Questions</h1><p>Shipping takes three days.</p></body></html>")
    (d / "manual.pdf").write_bytes(make_pdf("The reset button is on the back panel.", title="Device Manual"))
    (d / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf at all")
    (d / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (d / "data.csv").write_text("a,b\n1,2\n")
    return d


def test_each_file_type_becomes_titled_passages_and_bad_files_are_listed(docs_dir, tmp_path):
    out = tmp_path / "corpus.jsonl"
    report = build_corpus(docs_dir, out, words=100, overlap=20)
    docs = {d.id: d for d in load_corpus(out)}
    titles = {d.id.rsplit("#", 1)[0]: d.title for d in docs.values()}
    assert titles == {"notes.txt": "notes", "guide.md": "Refund policy", "sub/faq.html": "FAQ",
                      "manual.pdf": "Device Manual"}
    assert "reset button is on the back panel" in docs["manual.pdf#0"].text
    assert docs["sub/faq.html#0"].text == "Questions Shipping takes three days."   # no script text
    notes = sorted((int(i.rsplit("#", 1)[1]), d.text) for i, d in docs.items() if i.startswith("notes.txt"))
    assert [o for o, _ in notes] == [0, 80, 137]   # 237 words: windows of 100 every 80, the last ends the text
    assert notes[0][1].split()[80:] == notes[1][1].split()[:20]   # 20 words of overlap
    skipped = dict(report.skipped)
    assert set(skipped) == {"broken.pdf", "image.txt", "data.csv"}
    assert "unreadable PDF" in skipped["broken.pdf"] and "binary file" in skipped["image.txt"]
    assert "unsupported file type '.csv'" in skipped["data.csv"]
    assert report.passages == len(docs) and sorted(report.read) == sorted(titles)


def test_rebuild_rereads_only_changed_files_and_drops_deleted_ones(docs_dir, tmp_path):
    out = tmp_path / "corpus.jsonl"
    build_corpus(docs_dir, out)
    (docs_dir / "guide.md").write_text("# Refund policy\n\nRefunds are issued within 30 days.\n")
    os.utime(docs_dir / "guide.md", ns=(1, 1))            # a different mtime even on coarse clocks
    (docs_dir / "sub" / "faq.html").unlink()
    report = build_corpus(docs_dir, out)
    assert report.read == ["guide.md"] and report.removed == ["sub/faq.html"]
    assert sorted(report.reused) == ["manual.pdf", "notes.txt"]
    docs = {d.id: d for d in load_corpus(out)}
    assert "30 days" in docs["guide.md#0"].text and not any(i.startswith("sub/") for i in docs)
    assert "manual.pdf#0" in docs                          # reused passages keep their ids
    state = json.loads((tmp_path / "corpus.jsonl.state.json").read_text())
    assert set(state["files"]) == {"guide.md", "manual.pdf", "notes.txt"}


def test_split_passages_edges():
    assert split_passages("", 100, 20) == []
    assert split_passages("a b c", 100, 20) == [(0, "a b c")]
    with pytest.raises(ValueError, match="overlap < words"):
        split_passages("a", 10, 10)


def test_cli_build_then_index_and_errors(docs_dir, tmp_path, capsys):
    out = tmp_path / "c.jsonl"
    assert main(["corpus", "build", str(docs_dir), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "skipped broken.pdf: unreadable PDF" in captured.err and "4 read" in captured.out
    assert main(["index", "--corpus", str(out), "--out", str(tmp_path / "idx")]) == 0
    assert main(["search", "--index", str(tmp_path / "idx"), "reset button", "--topk", "1"]) == 0
    assert "Device Manual (id manual.pdf#0)" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.bin").write_bytes(b"\x00\x01")
    with pytest.raises(CorpusError, match="no readable documents"):
        build_corpus(empty, tmp_path / "e.jsonl")
    assert main(["corpus", "build", str(tmp_path / "nope"), "--out", str(out)]) == 1
    assert "not a directory" in capsys.readouterr().err
