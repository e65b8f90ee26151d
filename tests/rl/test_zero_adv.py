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
