"""Checkpoints survive crashes at every stage of a save, torn files, and a second run in the same dir."""
import json
import logging
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from searchr1.rl import checkpoint as ckpt
from searchr1.rl.trainer import Trainer


class FakePolicy:
    """save_pretrained writes one tensor holding ``value`` (enough to tell two saves apart)."""

    def __init__(self, value: float):
        self.value = value

    def save_pretrained(self, d, safe_serialization=True):
        os.makedirs(d, exist_ok=True)
        save_file({"w": torch.full((4,), self.value)}, os.path.join(d, "model.safetensors"))


def _save(root, step, value, run_id="run-a", keep_last=3):
    return ckpt.save_checkpoint(root, step, FakePolicy(value), None, {"step": step}, keep_last=keep_last,
                                run_id=run_id)


def _value(path):
    return float(load_file(str(path / "policy" / "model.safetensors"))["w"][0])


def _complete_copies(root, step):
    """Complete copies of ``step`` under any name (its own, or a save's temporary ones)."""
    return [p for p in root.iterdir() if p.name.endswith(f"step_{step:06d}") or f"step_{step:06d}_" in p.name
            if (p / ckpt.DONE_FILE).is_file()]


class Crash(Exception):
    pass


def _fail_on_call(monkeypatch, module, name, k):
    """Make the k-th call of ``module.name`` raise (a process killed at that point)."""
    real, calls = getattr(module, name), []

    def wrapped(*a, **kw):
        calls.append(a)
        if len(calls) == k:
            raise Crash(f"killed at {name} #{k}")
        return real(*a, **kw)
    monkeypatch.setattr(module, name, wrapped)


def _count_calls(monkeypatch, module, name, fn):
    real, calls = getattr(module, name), []
    monkeypatch.setattr(module, name, lambda *a, **kw: (calls.append(a), real(*a, **kw))[1])
    fn()
    monkeypatch.setattr(module, name, real)
    return len(calls)


def _stages(tmp_path, monkeypatch):
    """(module, function, k) for every rename, removal, fsync and write a re-save of step 3 makes."""
    stages = [(torch, "save", 1), (FakePolicy, "save_pretrained", 1)]
    for mod, name in ((os, "rename"), (shutil, "rmtree"), (os, "fsync")):
        probe = tmp_path / f"probe-{name}"
        for s in (1, 2, 3):
            _save(probe, s, float(s), keep_last=3)
        n = _count_calls(monkeypatch, mod, name, lambda: _save(probe, 3, 30.0, keep_last=2))
        stages += [(mod, name, k) for k in range(1, n + 1)]
    return stages


def test_a_save_killed_at_any_stage_leaves_a_complete_copy_and_resume_finds_it(tmp_path, monkeypatch):
    """Re-saving step 3 over an existing one (keep_last 3 -> 2, so step 1 is pruned): a crash at each rename / removal / fsync
    / write keeps a complete step 3 under some name; recover() puts it back and cleans the rest."""
    stages = _stages(tmp_path, monkeypatch)
    assert [s[2] for s in stages if s[1] == "rename"] == [1, 2, 3]      # aside, into place, prune
    assert [s[2] for s in stages if s[1] == "rmtree"] == [1, 2]         # the old copy, the pruned one
    for i, (mod, name, k) in enumerate(stages):
        root = tmp_path / f"case{i}"
        for s in (1, 2, 3):
            _save(root, s, float(s), keep_last=3)
        with monkeypatch.context() as m:
            _fail_on_call(m, mod, name, k)
            with pytest.raises(Crash):
                _save(root, 3, 30.0, keep_last=2)
        assert _complete_copies(root, 3), (name, k)           # never a moment without a copy
        ckpt.recover(root)
        assert not [p for p in root.iterdir() if p.name.startswith(".tmp_")], (name, k)
        latest = ckpt.latest_checkpoint(root)
        assert latest.name == "step_000003", (name, k)
        assert _value(latest) in (3.0, 30.0), (name, k)        # the old or the new save, whole
        assert ckpt.load_state(latest)["step"] == 3
        assert (root / "step_000002" / ckpt.DONE_FILE).is_file()


def test_pruning_touches_only_this_runs_checkpoints(tmp_path):
    for s in (50, 60):
        _save(tmp_path, s, float(s), run_id="old-run")
    for s in (1, 2, 3):
        _save(tmp_path, s, float(s), run_id="new-run", keep_last=2)
    names = [p.name for p in ckpt.checkpoint_dirs(tmp_path)]
    assert names == ["step_000002", "step_000003", "step_000050", "step_000060"]
    assert ckpt.checkpoint_run_id(tmp_path / "step_000003") == "new-run"
    assert ckpt.load_state(tmp_path / "step_000003")["run_id"] == "new-run"


# ----------------------------------------------------------------------------- with the trainer
def _trainer(tiny_dir, questions, out, tiny_config, steps, **extra):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(123)
    cfg = tiny_config(out, total_steps=steps, checkpoint__every=1, logging__jsonl=extra.pop("jsonl", "false"),
                      **extra)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    return Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions,
                   reward_fn=lambda trajs, exs: ([float(len(t.response_ids)) for t in trajs], {}))


_STRAIGHT: dict = {}


@pytest.fixture
def straight(tiny_dir, questions, tmp_path_factory, tiny_config):
    """Weights after 3 uninterrupted steps (the reference for every resumed run; computed once)."""
    if not _STRAIGHT:
        tr = _trainer(tiny_dir, questions, tmp_path_factory.mktemp("straight"), tiny_config, 3)
        tr.fit()
        _STRAIGHT.update({k: v.clone() for k, v in tr.policy.state_dict().items()})
    return _STRAIGHT


def _same_weights(model, ref):
    return all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("stage", [("torch", "save", 1), ("os", "rename", 1), ("os", "rename", 2)])
def test_trainer_killed_while_saving_resumes_from_the_last_complete_checkpoint(
        stage, tiny_dir, questions, tmp_path, tiny_config, monkeypatch, straight):
    """Steps 1-2 saved; the save of step 3 dies while writing (resume from 2, redo 3), at the rename
    into place (the complete copy is restored: resume from 3) or while pruning step 1; --resume ends
    with the straight run's weights either way."""
    out = tmp_path / "run"
    _trainer(tiny_dir, questions, out, tiny_config, 2).fit()
    tr = _trainer(tiny_dir, questions, out, tiny_config, 3)
    mod = {"torch": torch, "os": os}[stage[0]]
    with monkeypatch.context() as m:
        _fail_on_call(m, mod, stage[1], stage[2])
        with pytest.raises(Crash):
            tr.fit(resume=True)
    tr = _trainer(tiny_dir, questions, out, tiny_config, 3)
    tr.fit(resume=True)
    assert tr.step == 3 and _same_weights(tr.policy, straight)
    assert [p.name for p in ckpt.checkpoint_dirs(out / "checkpoints")][-2:] == ["step_000002", "step_000003"]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".tmp_")]


@pytest.mark.parametrize("victim", ["policy/model.safetensors", ckpt.STATE_FILE])
def test_truncated_latest_checkpoint_falls_back_with_a_warning(victim, tiny_dir, questions, tmp_path, tiny_config,
                                                               caplog, straight):
    out = tmp_path / "run"
    _trainer(tiny_dir, questions, out, tiny_config, 2).fit()
    f = out / "checkpoints" / "step_000002" / victim
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    tr = _trainer(tiny_dir, questions, out, tiny_config, 3)
    with caplog.at_level(logging.WARNING, logger="searchr1"):
        tr.fit(resume=True)
    warned = [r.getMessage() for r in caplog.records if "skipping step_000002" in r.getMessage()]
    assert warned and str(f) in warned[0], caplog.text
    assert tr.step == 3 and _same_weights(tr.policy, straight)        # resumed at 1, redid 2 and 3
    assert (out / "checkpoints" / "unreadable-step_000002" / victim).is_file()   # kept, not deleted


def test_no_readable_checkpoint_is_one_clear_error(tiny_dir, questions, tmp_path, tiny_config):
    out = tmp_path / "run"
    _trainer(tiny_dir, questions, out, tiny_config, 1).fit()
    (out / "checkpoints" / "step_000001" / ckpt.STATE_FILE).write_bytes(b"not a zip")
    with pytest.raises(ckpt.CheckpointError, match="no readable checkpoint.*trainer_state.pt is unreadable"):
        _trainer(tiny_dir, questions, out, tiny_config, 2).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        _trainer(tiny_dir, questions, tmp_path / "empty", tiny_config, 2).fit(resume=True)


def test_fresh_run_into_a_used_dir_is_refused_and_overwrite_moves_the_old_run_aside(
        tiny_dir, questions, tmp_path, tiny_config):
    out = tmp_path / "run"
    first = _trainer(tiny_dir, questions, out, tiny_config, 2, jsonl="true")
    first.fit()
    old_id = json.loads((out / "run.json").read_text())["run_id"]
    assert ckpt.checkpoint_run_id(out / "checkpoints" / "step_000002") == old_id == first.run_id
    with pytest.raises(ckpt.OutputDirInUse, match=f"run {old_id} .*--resume.*--overwrite"):
        _trainer(tiny_dir, questions, out, tiny_config, 1).fit()
    assert [p.name for p in ckpt.checkpoint_dirs(out / "checkpoints")] == ["step_000001", "step_000002"]
    second = _trainer(tiny_dir, questions, out, tiny_config, 1, jsonl="true")
    second.fit(overwrite=True)
    prev = out / "previous-1"
    assert [p.name for p in ckpt.checkpoint_dirs(prev / "checkpoints")] == ["step_000001", "step_000002"]
    assert json.loads((prev / "run.json").read_text())["run_id"] == old_id
    assert len((prev / "metrics.jsonl").read_text().splitlines()) == 2
    assert [p.name for p in ckpt.checkpoint_dirs(out / "checkpoints")] == ["step_000001"]
    assert second.run_id != old_id == ckpt.checkpoint_run_id(prev / "checkpoints" / "step_000001")
    with pytest.raises(ValueError, match="pass one"):
        ckpt.start_run(out, resume=True, overwrite=True)


def test_torn_metrics_line_does_not_break_resume(tiny_dir, questions, tmp_path, tiny_config):
    out = tmp_path / "run"
    _trainer(tiny_dir, questions, out, tiny_config, 2, jsonl="true").fit()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "reward/me')                          # killed mid-write
    _trainer(tiny_dir, questions, out, tiny_config, 3, jsonl="true").fit(resume=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert (out / "metrics.torn.jsonl").read_text() == '{"step": 3, "reward/me\n'
