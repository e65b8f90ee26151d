"""Report and findings from hand-written run results (no model runs): known differences, known verdicts."""
import json

import pytest

from searchr1.errors import ConfigError

from searchr1.study.config import load_study
from searchr1.study.report import write_study_report
from searchr1.study.run import load_results, run_settings

CFG = load_study("quick", ["run.total_steps=6", "bootstrap=500"])


def _write_run(out, cond, seed, ems, types, history):
    d = out / "runs" / cond / f"seed-{seed}"
    d.mkdir(parents=True)
    (d / "settings.json").write_text(json.dumps(run_settings(CFG, CFG.conditions[cond], seed)))
    per_q = {f"q{i}": {"em": e, "type": t, "searches": 1} for i, (e, t) in enumerate(zip(ems, types))}
    res = {"condition": cond, "seed": seed, "method": "rl", "eval_method": "search-r1", "selected_step": 2,
           "selected_dev_em": 0.5, "rollout_budget": 96, "test": {"em": sum(ems) / len(ems)},
           "per_question": per_q, "wall_seconds": 1.0}
    (d / "result.json").write_text(json.dumps(res))
    (d / "history.json").write_text(json.dumps(history))


def _history(lengths, dev):
    rows = [{"step": 0, "heldout/em": dev[0]}]
    for s, n in enumerate(lengths, 1):
        row = {"step": s, "reward/mean": 0.5, "rollout/response_len": n, "actor/entropy": 1.0, "actor/kl": 0.01,
               "rollout/searches": 1.5, "rollout/masked_frac": 0.4, "collapse/same_reward_groups": 0.5,
               "collapse/rewarded_logp": float("nan"), "collapse/invalid_rate": 0.0}
        if s % 2 == 0:
            row["heldout/em"] = dev[s // 2]
        rows.append(row)
    return rows


@pytest.fixture
def study(tmp_path):
    cfg = CFG
    types = ["single-hop"] * 6 + ["two-hop"] * 6
    dip = _history([100, 100, 60, 60, 90, 90], [0.5, 0.6, 0.6, 0.6])
    for seed in range(2):
        # grpo beats grpo-nomask by 1 on every question (a constant difference) and rag by 0.5
        grpo = [1] * 12
        _write_run(tmp_path, "grpo", seed, grpo, types, dip)
        _write_run(tmp_path, "grpo-nomask", seed, [0] * 12, types, dip)
        _write_run(tmp_path, "r1", seed, [0] * 12, types, dip)
        _write_run(tmp_path, "base+search", seed, grpo, types, [])
        _write_run(tmp_path, "rag", seed, [1, 0] * 6, types, [])
        _write_run(tmp_path, "direct", seed, [0] * 12, types, [])
    return cfg, tmp_path


def test_report_classifies_every_finding_with_known_answers(study):
    cfg, out = study
    results = load_results(out, cfg)
    path = write_study_report(cfg, results, out, "searchr1 study --preset quick")
    stats = json.loads((out / "stats.json").read_text())
    by_name = {f["name"]: f for f in stats["findings"]}
    assert set(by_name) == {f.name for f in cfg.findings}
    m = by_name["masking"]["estimate"]
    assert m["mean"] == m["lo"] == m["hi"] == 1.0     # a constant paired difference: a zero-width CI
    assert by_name["masking"]["verdict"] == "reproduced"
    rag = by_name["rl-over-rag"]["estimate"]
    assert rag["mean"] == 0.5 and 0 < rag["lo"] < 0.5 < rag["hi"] < 1
    assert by_name["rag-over-r1"]["verdict"] == "reproduced"
    assert by_name["r1-over-direct"]["verdict"] == "inconclusive"           # 0 == 0: a tie
    assert by_name["rl-adds-over-base"]["estimate"]["hi"] == 0.0
    assert stats["conditions"]["rag"]["em_two-hop"]["mean"] == 0.5
    text = path.read_text()
    assert "| masking |" in text and "**reproduced**" in text and "**inconclusive**" in text
    assert "1.000 [1.000, 1.000]" in text
    for name in ("dynamics", "grpo", "grpo-nomask", "r1"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
        assert f"plots/{name}.png" in text


def test_curve_findings_use_the_run_histories(study, tmp_path):
    cfg, out = study
    p = tmp_path / "curves.yaml"
    p.write_text("extends: quick\nfindings:\n  - {name: dip, claim: c, a: grpo, metric: length_dip}\n"
                 "  - {name: drop, claim: c, a: grpo, b: grpo-nomask, metric: dev_drop}\n")
    cfg = load_study(str(p), ["run.total_steps=6", "bootstrap=500"])
    write_study_report(cfg, load_results(out, cfg), out)
    by_name = {f["name"]: f for f in json.loads((out / "stats.json").read_text())["findings"]}
    assert by_name["dip"]["estimate"]["mean"] == pytest.approx(30.0)     # min(100 - 60, 90 - 60)
    assert by_name["dip"]["verdict"] == "inconclusive"                  # 2 seeds agree: not enough for a verdict
    assert "needs >= 6 seeds" in by_name["dip"]["note"]
    assert by_name["drop"]["estimate"]["mean"] == 0.0 and by_name["drop"]["verdict"] == "inconclusive"


def test_missing_runs_are_reported_not_invented(study):
    cfg, out = study
    results = load_results(out, cfg)
    results["grpo-nomask"] = {}
    text = write_study_report(cfg, results, out).read_text()
    assert "| grpo-nomask | rl | not run |" in text
    assert "| masking |" in text and "**not run**" in text


def test_results_of_other_settings_are_refused(study):
    cfg, out = study
    with pytest.raises(ConfigError, match="finished with other settings"):
        load_results(out, load_study("quick", ["run.total_steps=7", "bootstrap=500"]))
