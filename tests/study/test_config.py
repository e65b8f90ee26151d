"""Study presets load and validate; bad studies end in one clear error line."""
import pytest

from searchr1.cli import main
from searchr1.errors import ConfigError
from searchr1.study.config import load_study, rollout_budget


@pytest.mark.parametrize("preset", ["quick", "paper-findings", "ppo-critic", "demo-defaults"])
def test_shipped_presets_are_valid_and_equal_budget(preset):
    cfg = load_study(preset)
    trained = [c for c in cfg.conditions.values() if c.trained]
    assert trained and cfg.findings
    assert len({rollout_budget(cfg.train_config(c)) for c in trained}) == 1
    for f in cfg.findings:   # every finding names declared conditions
        assert f.a in cfg.conditions and (f.b is None or f.b in cfg.conditions)


def test_paper_findings_covers_the_grid_of_the_issue():
    cfg = load_study("paper-findings")
    tcs = {n: cfg.train_config(c) for n, c in cfg.conditions.items() if c.trained}
    assert {t.algorithm.name for t in tcs.values()} >= {"ppo", "grpo", "reinforce"}
    assert {t.rollout.topk for t in tcs.values()} >= {1, 3, 5}
    assert {t.algorithm.group_size for t in tcs.values()} >= {1, 3, 5}
    assert {t.algorithm.mask_retrieved for t in tcs.values()} == {True, False}
    assert len({t.rollout.max_turns for t in tcs.values()}) >= 2
    assert {c.method for c in cfg.conditions.values()} >= {"rejection-sampling", "base+search", "rag", "direct"}
    assert not cfg.conditions["r1"].search


def test_user_study_extends_a_preset_and_overrides(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("extends: quick\nrun: {total_steps: 3}\nconditions:\n  grpo-top1: {method: rl, set: [rollout.topk=1]}\n"
                 "findings:\n  - {name: masking, claim: changed, a: grpo, b: grpo-top1}\n")
    cfg = load_study(str(p), ["run.test_questions=10"], seeds=1)
    assert cfg.name == "mine" and cfg.seeds == 1 and cfg.total_steps == 3 and cfg.test_questions == 10
    assert "grpo-top1" in cfg.conditions and "grpo" in cfg.conditions
    assert cfg.train_config(cfg.conditions["grpo-top1"]).rollout.topk == 1
    masking = [f for f in cfg.findings if f.name == "masking"]
    assert len(masking) == 1 and masking[0].b == "grpo-top1"
    assert cfg.eval_every == load_study("quick").eval_every   # kept from the preset


@pytest.mark.parametrize("yaml_text,message", [
    ("extends: quick\nconditions:\n  big: {method: rl, set: [data.batch_size=12, data.mini_batch_size=12]}\n", "same number of trajectories"),
    ("extends: quick\nfindings:\n  - {name: x, claim: y, a: grpo, b: nosuch}\n", "does not declare"),
    ("extends: quick\nconditions:\n  x: {method: magic}\n", "use one of rl"),
    ("extends: quick\nconditions:\n  x: {method: rl, set: [algorithm.nam=ppo]}\n", "unknown config key"),
    ("extends: quick\nrun: {steps: 3}\n", "unknown run keys"),
    ("extends: quick\nfindings:\n  - {name: x, claim: y, a: rag, b: direct, metric: dev_drop}\n", "needs trained"),
    ("extends: quick\nselect: best\n", "best-dev or last"),
])
def test_bad_studies_are_rejected(tmp_path, yaml_text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_study(str(p))


@pytest.mark.parametrize("argv,code,message", [
    (["study", "--preset", "nosuch"], 2, "preset name (demo-defaults, paper-findings, ppo-critic, quick)"),
    (["study", "--preset", "quick", "--seeds", "0"], 2, "--seeds 0"),
    (["study", "--preset", "quick", "--set", "run.total_steps=0"], 2, "must be >= 1"),
    (["study", "--preset", "quick", "--report-only", "--out", "{tmp}/none"], 1, "no finished runs"),
    (["study", "--preset", "quick", "--only", "grpo,nosuch", "--out", "{tmp}/o"], 2, "--only nosuch: not conditions"),
])
def test_cli_errors_are_one_line(argv, code, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
