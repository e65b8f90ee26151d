"""The shortened demo writes every artifact, well-formed, and is deterministic for a seed."""
import json
from pathlib import Path

METHODS = {"search-r1", "r1", "rag", "direct", "base+search"}


def test_summary_has_the_issue_shape(fast_demo):
    cfg, summary = fast_demo
    on_disk = json.loads((Path(cfg.out) / "summary.json").read_text())
    assert on_disk["methods"].keys() == METHODS
    assert isinstance(on_disk["wall_seconds"], float) and on_disk["train_steps"] == cfg.total_steps == 2
    for m in on_disk["methods"].values():
        assert set(m) >= {"em", "f1", "searches_per_question"}
        assert 0.0 <= m["em"] <= 1.0 and 0.0 <= m["f1"] <= 1.0
    assert set(on_disk["by_type"]) == {"single-hop", "two-hop"}
    assert all(row.keys() == METHODS for row in on_disk["by_type"].values())
    assert on_disk["methods"]["rag"]["searches_per_question"] == 1.0  # rag retrieves once, no more
    assert on_disk["methods"]["r1"]["searches_per_question"] == 0.0   # r1 has no search engine


def test_artifacts_are_written_and_loadable(fast_demo):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from searchr1.models.copy_lm import register_copy_lm

    cfg, summary = fast_demo
    out = Path(cfg.out)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "| search-r1 |" in report and "| rag |" in report and "Wall times" in report
    history = json.loads((out / "history.json").read_text())
    assert set(history) == {"search-r1", "r1"} and [r["step"] for r in history["search-r1"]] == [0, 1, 2]
    assert "heldout/em" in history["search-r1"][0]  # the curves start from the base model
    assert {"reward/mean", "rollout/searches", "rollout/response_len", "rollout/masked_frac",
            "heldout/em"} <= set(history["search-r1"][-1])
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == len(METHODS) * summary["test_questions"] and {p["method"] for p in preds} == METHODS
    for name in ("corpus.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "stats.md", "index/index.json"):
        assert (out / "world" / name).stat().st_size > 0
    register_copy_lm()
    model = AutoModelForCausalLM.from_pretrained(out / "checkpoint")
    tok = AutoTokenizer.from_pretrained(out / "checkpoint")
    assert model.config.vocab_size == len(tok)
    base = AutoModelForCausalLM.from_pretrained(summary["base_model"])
    changed = [n for (n, p), (_, q) in zip(model.named_parameters(), base.named_parameters()) if not p.equal(q)]
    history = json.loads((out / "history.json").read_text())["search-r1"]
    if all(row["actor/skipped_zero_adv"] == 1.0 for row in history if row["step"]):   # no reward in any group: no update
        assert not changed, "steps without learning signal must leave the policy untouched"
    else:
        assert changed, "RL must have updated the policy"


def test_same_seed_same_results(fast_demo, tmp_path):
    from searchr1.demo.config import fast_config
    from searchr1.demo.run import run_demo

    cfg, summary = fast_demo
    again = run_demo(fast_config(out=str(tmp_path / "again"), cache_dir=cfg.cache_dir), progress=False,
                     log=lambda *_: None)
    assert again["methods"] == summary["methods"] and again["by_type"] == summary["by_type"]
    h1 = json.loads((Path(cfg.out) / "history.json").read_text())
    h2 = json.loads((tmp_path / "again" / "history.json").read_text())
    strip = [{k: v for k, v in r.items() if k != "elapsed"} for r in h1["search-r1"]]
    assert strip == [{k: v for k, v in r.items() if k != "elapsed"} for r in h2["search-r1"]]
    p1 = (Path(cfg.out) / "predictions.jsonl").read_text().splitlines()
    p2 = (tmp_path / "again" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(a)["response"] for a in p1] == [json.loads(b)["response"] for b in p2]


def _demo_args(argv):
    from searchr1.cli import build_parser

    return build_parser("demo").parse_args(["demo", *argv])


def test_cli_parses_ablation_flags():
    from searchr1.demo.cli import demo_config_from_args

    cfg = demo_config_from_args(_demo_args(["--algorithm", "ppo", "--no-mask", "--topk", "5", "--max-turns", "3",
                                            "--steps", "2", "3", "--seed", "4", "--lr", "3e-4",
                                            "--questions-per-step", "8", "--set", "algorithm.clip_eps=0.1"]))
    t = cfg.train
    assert (t.algorithm.name, t.algorithm.mask_retrieved, t.rollout.topk, t.rollout.max_turns) == ("ppo", False, 5, 3)
    assert (cfg.single_hop_steps, cfg.total_steps, cfg.world.seed, t.seed) == (2, 5, 4, 4)
    assert (t.optimizer.actor_lr, t.optimizer.critic_lr, t.data.batch_size, t.data.mini_batch_size) == (3e-4, 3e-4, 8, 8)
    assert t.algorithm.clip_eps == 0.1


def test_demo_defaults_come_from_the_demo_preset():
    from searchr1.demo.config import DemoConfig
    from searchr1.rl.config import load_config

    cfg = DemoConfig()
    preset = load_config("configs/demo.yaml")
    assert cfg.train.algorithm == preset.algorithm and cfg.train.optimizer == preset.optimizer
    assert (cfg.total_steps, cfg.train.algorithm.group_size, cfg.train.data.batch_size) == (32, 8, 4)


def test_bad_demo_settings_fail_before_anything_runs():
    import pytest

    from searchr1.demo.cli import demo_config_from_args
    from searchr1.errors import ConfigError

    with pytest.raises(ConfigError, match="group_size >= 2"):
        demo_config_from_args(_demo_args(["--group-size", "1"]))
    with pytest.raises(ConfigError, match="unknown config key 'algorithm.nam'"):
        demo_config_from_args(_demo_args(["--set", "algorithm.nam=ppo"]))
    with pytest.raises(ConfigError, match="single_hop_steps=9"):
        demo_config_from_args(_demo_args(["--steps", "9", "0", "--set", "total_steps=5"]))
