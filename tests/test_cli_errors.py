"""Bad command lines end in one `error: …` line (or argparse's usage error) with exit 2 for usage and 1
for runtime failures — never a traceback. Search commands have their own table in tests/search/."""
from __future__ import annotations

import pytest

from searchr1.cli import main

CASES = [
    # (argv, exit code, substring of stderr)
    (["train", "--config", "nope.yaml"], 2, "preset name (demo,"),
    (["train", "--config", "{bad_yaml}"], 2, "bad.yaml:3:1: invalid YAML"),
    (["train", "--config", "tiny-cpu", "algorithm.nam=ppo"], 2, "unknown config key 'algorithm.nam'"),
    (["train", "--config", "tiny-cpu", "rollout.max_turns=x"], 2, "rollout.max_turns: expected an integer"),
    (["train", "--config", "tiny-cpu", "algorithm.reward=accuracy"], 2, "use one of em, subem, f1, format"),
    (["train", "--config", "tiny-cpu", "data.train_file={missing}"], 2, "does not exist"),
    (["train", "--recipe", "sft"], 2, "recipe=sft needs sft.train_file"),
    (["train", "--config", "tiny-cpu", "rollout.do_sample=false"], 2, "every advantage is 0"),
    (["train", "--recipe", "ppo", "algorithm.name=grpo"], 2, "contradicts the override"),
    (["demo", "--group-size", "1"], 2, "group_size >= 2"),
    (["demo", "--set", "nonsense"], 2, "is not key=value"),
    (["eval", "--data", "{missing}", "--out", "{tmp}/e"], 1, "no such file or directory"),
    (["eval", "--data", "{bad_yaml}", "--out", "{tmp}/e"], 1, "unknown file type '.yaml'"),
    (["eval", "--data", "nq", "--out", "{tmp}/e", "--methods", "foo"], 2, "unknown or no methods ['foo']"),
    (["data", "show", "{missing}"], 1, "no such file or directory"),
    (["world", "--out", "{tmp}/w", "--entities", "0"], 2, "people must be >= 2"),
    (["ask", "hello", "--index", "{missing}"], 1, "does not exist"),
    (["eval", "--data", "{qa}", "--out", "{tmp}/e", "--methods", "direct", "--model", "nosuch-org/nosuch-model"], 1,
     "is not a local directory nor in the Hugging Face cache"),
    (["nosuch"], 2, "invalid choice: 'nosuch'"),
    (["corpus", "stats", "{bad_utf8}"], 1, "bad.jsonl:2: not UTF-8 text (invalid start byte: byte 0xff at column"),
    (["data", "show", "{bad_utf8}"], 1, "bad.jsonl: row 2: not UTF-8 text"),
]


@pytest.mark.parametrize("argv,code,message", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_gives_one_error_line(argv, code, message, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  path: [x\n")
    bad_utf8 = tmp_path / "bad.jsonl"
    bad_utf8.write_bytes(b'{"id": "1", "contents": "ok", "question": "q", "golden_answers": ["a"]}\n'
                         b'{"id": "2", "contents": "bad \xff", "question": "q", "golden_answers": ["a"]}\n')
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"id": "1", "question": "who?", "golden_answers": ["x"]}\n')
    fill = {"bad_yaml": str(bad), "missing": str(tmp_path / "missing.jsonl"), "tmp": str(tmp_path), "qa": str(qa),
            "bad_utf8": str(bad_utf8)}
    argv = [a.format(**fill) for a in argv]
    try:
        got = main(argv)
    except SystemExit as e:   # argparse's own usage errors
        got = e.code
    err = capsys.readouterr().err
    assert got == code, err
    assert message in err, err
    assert "Traceback" not in err
    if got == 2 and "usage:" not in err or got == 1:
        assert len([ln for ln in err.splitlines() if ln.startswith("error: ")]) == 1, err


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="preset name"):
        main(["train", "--config", "nope.yaml", "--debug"])
