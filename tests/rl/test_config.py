"""Config loading, dotted overrides with type coercion, and clear rejections."""
from pathlib import Path

import pytest

from searchr1.rl.cli import recipe_overrides
from searchr1.errors import ConfigError
from searchr1.rl.config import config_from_dict, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_presets_load_with_paper_values():
    ppo = load_config(CONFIGS / "paper-ppo-qwen2.5-3b.yaml")
    grpo = load_config(CONFIGS / "paper-grpo-qwen2.5-3b.yaml")
    for c in (ppo, grpo):
        assert (c.optimizer.actor_lr, c.algorithm.kl_coef, c.algorithm.clip_eps) == (1e-6, 0.001, 0.2)
        assert (c.data.batch_size, c.data.mini_batch_size, c.total_steps) == (512, 256, 1005)
        assert (c.rollout.topk, c.rollout.max_turns, c.rollout.max_turn_tokens, c.rollout.max_obs_tokens) == (3, 4, 500, 500)
        assert c.algorithm.kl_estimator == "low_var_kl" and c.algorithm.mask_retrieved
    assert ppo.optimizer.critic_lr == 1e-5 and ppo.algorithm.kl_placement == "reward"
    assert grpo.algorithm.group_size == 5 and grpo.algorithm.kl_placement == "loss"
    assert load_config(CONFIGS / "tiny-cpu.yaml").device == "cpu"


def test_dotted_overrides_are_coerced():
    c = load_config(CONFIGS / "tiny-cpu.yaml", ["algorithm.name=ppo", "rollout.max_turns=2", "optimizer.actor_lr=3e-5",
                                                "algorithm.mask_retrieved=false", "algorithm.dual_clip_c=3",
                                                "rollout.stop=[END]", "algorithm.clip_eps_high=null"])
    assert c.algorithm.name == "ppo" and c.rollout.max_turns == 2 and c.optimizer.actor_lr == 3e-5
    assert c.algorithm.mask_retrieved is False and c.algorithm.dual_clip_c == 3.0
    assert c.rollout.stop == ("END",) and c.algorithm.clip_eps_high is None


@pytest.mark.parametrize("overrides,match", [
    (["algorithm.nam=ppo"], r"unknown config key 'algorithm.nam'.*valid keys under algorithm: name"),
    (["algoritm.name=ppo"], r"unknown config key 'algoritm'.*algorithm"),
    (["rollout.max_turns=two"], r"rollout.max_turns: expected an integer"),
    (["algorithm.mask_retrieved=maybe"], r"expected true/false"),
    (["algorithm.name=grpo", "algorithm.group_size=1"], r"group_size >= 2.*set algorithm.group_size"),
    (["algorithm.name=dpo"], r"use one of ppo, grpo.*--recipe"),
    (["algorithm.loss_agg_mode=mean"], r"token-mean"),
    (["data.batch_size=6", "data.mini_batch_size=4"], r"not a multiple"),
    (["algorithm.kl_controller=adaptive", "algorithm.name=grpo"], r"kl_in=reward"),
    (["rollout.max_turns=0"], r"max_turns must be >= 1"),
    (["noequals"], r"key=value"),
])
def test_bad_configs_are_rejected_with_a_fix(overrides, match):
    with pytest.raises((KeyError, ValueError, TypeError), match=match):
        config_from_dict({}, overrides)


def test_recipe_flag_and_algorithm_name_agree():
    assert "algorithm.name=ppo" in recipe_overrides("ppo", [])
    assert "recipe=sft" in recipe_overrides("sft", [])
    with pytest.raises(ValueError, match="contradicts"):
        recipe_overrides("ppo", ["algorithm.name=grpo"])
    assert config_from_dict({}, recipe_overrides("rejection-sampling", [])).recipe == "rejection-sampling"


def test_missing_config_file_names_the_presets():
    with pytest.raises(ConfigError, match="preset name.*tiny-cpu"):
        load_config("nope.yaml")


def test_preset_names_resolve_to_the_shipped_files():
    assert load_config("tiny-cpu").model.path == load_config(CONFIGS / "tiny-cpu.yaml").model.path


@pytest.mark.parametrize("text,match", [
    ("model:\n  path: [unclosed\n", r"bad\.yaml:\d+:\d+: invalid YAML"),
    ("- a list\n", r"bad\.yaml: the top level must be a mapping"),
    ("algorithm:\n  name: dpo\n", r"bad\.yaml: algorithm.name='dpo'"),
    ("algorithm:\n  reward: accuracy\n", r"bad\.yaml: algorithm.reward='accuracy': use one of em, subem, f1, format"),
])
def test_config_file_errors_name_the_file(tmp_path, text, match):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(bad)


@pytest.mark.parametrize("overrides,match", [
    (["recipe=sft"], r"recipe=sft needs sft.train_file"),
    (["algorithm.name=grpo", "rollout.do_sample=false"], r"every advantage is 0"),
    (["device=gpu"], r"device='gpu'"),
])
def test_cross_field_rules_before_any_model_loads(overrides, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({}, overrides)


def test_check_inputs_names_missing_files(tmp_path):
    cfg = config_from_dict({}, [f"data.train_file={tmp_path / 'missing.jsonl'}", f"data.index_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="data.train_file=.*missing.jsonl does not exist"):
        cfg.check_inputs()
    with pytest.raises(ConfigError, match="no retriever"):
        config_from_dict({}, ["data.train_file=x"]).check_inputs()
