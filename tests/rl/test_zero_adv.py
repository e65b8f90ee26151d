"""GRPO with no learning signal (every group scored the same) leaves the policy untouched."""
import torch

from searchr1.rl.trainer import Trainer


def constant_reward(trajs, examples):
    return [1.0] * len(trajs), {"constant": 1.0}


def _changed(model, before):
    return [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]


def test_all_equal_rewards_skip_the_update(tiny, questions, tmp_path, tiny_config):
    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = tiny_config(tmp_path, total_steps=2, **{"algorithm__kl_coef": "0.1", "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=constant_reward,
                 log_to_disk=False)
    m = tr.train_step()
    assert m["actor/skipped_zero_adv"] == 1.0
    assert _changed(model, before) == []
    assert not tr.learner.opt.state            # Adam never stepped


def test_a_batch_without_signal_costs_no_log_prob_pass(tiny, questions, tmp_path, tiny_config, monkeypatch):
    """prepare() knows a critic-free batch's advantages from its scores: with none non-zero it skips the
    old and reference log-prob passes (the update would discard them); with signal it runs them."""
    import searchr1.rl.learner as learner_mod

    calls = []
    real = learner_mod.forward_logprobs
    monkeypatch.setattr(learner_mod, "forward_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, tok = tiny
    cfg = tiny_config(tmp_path, total_steps=2, **{"algorithm__kl_coef": "0.1", "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=constant_reward,
                 log_to_disk=False)
    assert tr.train_step()["actor/skipped_zero_adv"] == 1.0 and calls == []
    tr.reward_fn = lambda trajs, exs: ([float(i % 2) for i in range(len(trajs))], {"alternating": 0.5})
    assert tr.train_step()["actor/skipped_zero_adv"] == 0.0
    assert calls                               # the reference pass (kl_coef 0.1) ran


def test_all_equal_rewards_move_the_weights_when_skipping_is_off(tiny, questions, tmp_path, tiny_config):
    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = tiny_config(tmp_path, total_steps=2, **{"algorithm__kl_coef": "0.1", "algorithm__skip_zero_adv": "false",
                                                   "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=constant_reward,
                 log_to_disk=False)
    m = tr.train_step()
    assert m["actor/skipped_zero_adv"] == 0.0
    assert len(_changed(model, before)) > 0.5 * len(before)


def zero_reward(trajs, examples):
    return [0.0] * len(trajs), {"em": 0.0}


def test_a_run_that_never_gets_signal_stops_and_says_why(tiny, questions, tmp_path, tiny_config):
    import pytest

    from searchr1.rl.signal_watch import TrainingStalled

    model, tok = tiny
    cfg = tiny_config(tmp_path, total_steps=10, **{"guards__max_zero_adv_steps": "3", "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=zero_reward,
                 log_to_disk=False)
    with pytest.raises(TrainingStalled, match=r"no sampled trajectory was rewarded in the first 3 steps.*cold start"):
        tr.fit()
    assert tr.step == 3


def test_all_rewarded_runs_stop_too_and_the_check_can_be_turned_off(tiny, questions, tmp_path, tiny_config):
    import pytest

    from searchr1.rl.signal_watch import TrainingStalled

    model, tok = tiny
    cfg = tiny_config(tmp_path, total_steps=4, **{"guards__max_zero_adv_steps": "2", "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=constant_reward,
                 log_to_disk=False)
    with pytest.raises(TrainingStalled, match="every sampled trajectory was rewarded"):
        tr.fit()
    cfg = tiny_config(tmp_path / "off", total_steps=3, **{"guards__max_zero_adv_steps": "0", "logging__jsonl": "false"})
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=constant_reward,
                 log_to_disk=False)
    tr.fit()
    assert tr.step == 3
