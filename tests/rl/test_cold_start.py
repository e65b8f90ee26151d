"""The cold start: probe, scripted-teacher SFT with the rollout's token layout, merge, cache; clear errors."""
from __future__ import annotations

import pytest
import torch

from searchr1.data.qa import QAExample
from searchr1.data.world import WorldConfig, generate_world
from searchr1.errors import ConfigError
from searchr1.rl.cold_start import teacher_trajectories
from searchr1.rl.trainer import Trainer
from searchr1.search.bm25 import BM25Config, BM25Retriever


@pytest.fixture(scope="module")
def world():
    w = generate_world(WorldConfig(seed=5, people=12, works=3, dev_frac=0.2, test_frac=0.2))
    return w, BM25Retriever.build(w.documents, BM25Config(backend="numpy"))


def _cfg(tiny_config, tmp_path, **extra):
    over = {"rollout__search_enabled": "true", "rollout__max_turns": "2", "rollout__max_turn_tokens": "8",
            "rollout__max_total_tokens": "2048", "rollout__max_prompt_tokens": "512",
            "cold_start__teacher_trajectories": "4", "cold_start__epochs": "2", "cold_start__lr": "0.01",
            "cold_start__probe_questions": "2", "cold_start__lora_rank": "4", "cold_start__batch_size": "4",
            "cold_start__cache_dir": str(tmp_path / "cache"), "logging__jsonl": "false"}
    over.update(extra)
    return tiny_config(tmp_path / "out", **over)


def test_teacher_trajectories_mask_the_observations(world, tiny):
    w, bm25 = world
    _, tok = tiny
    cfg_q = [q for q in w.splits["train"] if q.metadata["type"] == "two-hop"][:1]
    from searchr1.rl.config import config_from_dict

    (t,) = teacher_trajectories(config_from_dict({}, ["data.prompt_template=search-r1"]), tok, bm25, cfg_q)
    text = tok.decode(t.response_ids)
    injected = tok.decode([i for i, m in zip(t.response_ids, t.response_mask) if not m])
    assert text.count("<search>") == 2 and "<answer>" in text and t.response_ids[-1] == tok.eos_token_id
    assert injected.count("<information>") == 2 and "<search>" not in injected and "<answer>" not in injected


def test_sft_merges_into_the_policy_and_is_cached(world, tiny, tmp_path, tiny_config):
    w, bm25 = world
    model, tok = tiny
    base = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = _cfg(tiny_config, tmp_path, cold_start__mode="always")
    cfg.data.prompt_template = "search-r1"
    tr = Trainer(cfg, policy=model, tokenizer=tok, retriever=bm25, train_examples=w.splits["train"],
                 val_examples=w.splits["dev"], log_to_disk=False)
    rep = tr.cold_start_report
    assert rep["ran"] and rep["trajectories"] == 4 and rep["sft"]["sft/loss"] < rep["sft"]["sft/loss_first_epoch"]
    assert "after" in rep and 0.0 <= rep["after"]["format"] <= 1.0
    merged = tr.learner.ref.state_dict() if tr.learner.ref is not None else tr.policy.state_dict()
    changed = [k for k, v in base.items() if k in merged and not torch.equal(v, merged[k])]
    assert changed, "the merged SFT adapter must change the weights RL starts from (and its KL reference)"
    model2, _ = tiny_fresh(tiny)
    tr2 = Trainer(cfg, policy=model2, tokenizer=tok, retriever=bm25, train_examples=w.splits["train"],
                  val_examples=w.splits["dev"], log_to_disk=False)
    assert tr2.cold_start_report["cached"] is True and tr2.cold_start_report["key"] == rep["key"]
    for k, v in tr2.policy.state_dict().items():
        if k in tr.policy.state_dict() and "lora" not in k:
            assert torch.allclose(v, tr.policy.state_dict()[k]), k


def tiny_fresh(tiny):
    from transformers import AutoModelForCausalLM

    model, tok = tiny
    return AutoModelForCausalLM.from_pretrained(model.name_or_path), tok


def test_auto_skips_a_policy_that_already_writes_the_format(world, tiny, tmp_path, tiny_config):
    w, bm25 = world
    model, tok = tiny
    cfg = _cfg(tiny_config, tmp_path, cold_start__mode="auto", cold_start__min_format="0.0")
    tr = Trainer(cfg, policy=model, tokenizer=tok, retriever=bm25, train_examples=w.splits["train"],
                 val_examples=w.splits["dev"], log_to_disk=False)
    assert tr.cold_start_report["ran"] is False and "before" in tr.cold_start_report


def test_no_teacher_for_plain_questions(tiny, tmp_path, tiny_config, world):
    _, bm25 = world
    model, tok = tiny
    plain = [QAExample(id=f"q{i}", question=f"what is {i}", golden_answers=[str(i)]) for i in range(4)]
    cfg = _cfg(tiny_config, tmp_path, cold_start__mode="always")
    with pytest.raises(ConfigError, match="no metadata\\['hop_queries'\\].*sft.train_file"):
        Trainer(cfg, policy=model, tokenizer=tok, retriever=bm25, train_examples=plain, val_examples=[],
                log_to_disk=False)
