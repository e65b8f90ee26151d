"""`searchr1 study --preset quick` end to end on a very reduced budget: the report's shape, every finding
classified, finished runs kept by --resume and a second run without it refused."""
import json

import pytest

from searchr1.cli import main
from searchr1.study.config import load_study
from searchr1.study.stats import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

TINY = ["run.total_steps=2", "run.eval_every=1", "run.dev_questions=4", "run.test_questions=8", "run.people=60",
        "run.set=[algorithm.group_size=2,data.batch_size=2,data.mini_batch_size=2,rollout.max_turn_tokens=48]",
        "bootstrap=200"]


@pytest.mark.slow
def test_quick_study_reduced_budget_writes_a_classified_report(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--preset", "quick", "--seeds", "2", "--out", str(out), "--no-progress"]
    for o in TINY:
        argv += ["--set", o]
    assert main(argv) == 0
    cfg = load_study("quick", TINY, seeds=2)
    runs = sorted(out.glob("runs/*/seed-*/result.json"))
    assert len(runs) == len(cfg.conditions) * 2
    for p in runs:
        r = json.loads(p.read_text())
        assert len(r["per_question"]) == 8
        if r["method"] == "rl":
            assert 1 <= r["selected_step"] <= 2 and r["rollout_budget"] == 2 * 2 * 2
            hist = json.loads((p.parent / "history.json").read_text())
            assert [h["step"] for h in hist] == [0, 1, 2]
            for h in hist[1:]:
                assert {"reward/mean", "rollout/response_len", "rollout/searches", "rollout/masked_frac",
                        "collapse/same_reward_groups", "collapse/rewarded_logp", "collapse/invalid_rate"} <= set(h)
                if h["actor/skipped_zero_adv"] == 0.0:   # a step without signal skips its update: no entropy, KL
                    assert {"actor/entropy", "actor/kl"} <= set(h)
    report = (out / "report.md").read_text()
    stats = json.loads((out / "stats.json").read_text())
    assert [f["name"] for f in stats["findings"]] == [f.name for f in cfg.findings]
    for f in stats["findings"]:
        assert f["verdict"] in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
        e = f["estimate"]
        assert e["lo"] <= e["mean"] <= e["hi"] and e["seeds"] == 2
        assert f"| {f['name']} |" in report
    assert (out / "plots" / "dynamics.png").is_file() and "plots/dynamics.png" in report
    # the same test questions for every condition of a seed (a paired design)
    ids = {json.dumps(sorted(json.loads(p.read_text())["per_question"])) for p in out.glob("runs/*/seed-0/result.json")}
    assert len(ids) == 1

    # --resume: nothing re-runs (result files untouched); without it: refused with one error line
    mtimes = {p: p.stat().st_mtime_ns for p in runs}
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 0
    assert "finished before, kept" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in runs} == mtimes
    assert main(argv) == 2
    assert "pass --resume" in capsys.readouterr().err
    # a finished run whose settings changed is not silently reused
    assert main(argv + ["--set", "run.test_questions=6", "--resume"]) == 2
    assert "finished with other settings" in capsys.readouterr().err
