"""Truncated importance sampling (algorithm.tis_cap): the engine/trainer mismatch correction."""
import math

import pytest
import torch

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import Batch
from searchr1.rl.config import config_from_dict
from searchr1.rl.learner import actor_loss


def test_tis_weights_are_the_capped_probability_ratio_without_gradient():
    old = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.1)]], requires_grad=True)
    engine = torch.log(torch.tensor([[0.25, 0.9, 0.5]]))
    w = ca.tis_weights(old, engine, cap=1.5)
    torch.testing.assert_close(w, torch.tensor([[1.5, 1.0, 0.2]]))   # 2.0 capped at 1.5, 1.0, 0.2
    assert not w.requires_grad


def _batch(rollout_logp):
    B, R = 2, 3
    return Batch(input_ids=torch.zeros(B, 4, dtype=torch.long), attention_mask=torch.ones(B, 4),
                 resp_index=torch.zeros(B, R, dtype=torch.long), responses=torch.zeros(B, R, dtype=torch.long),
                 policy_mask=torch.tensor([[1., 1., 0.], [1., 1., 1.]]), valid_mask=torch.ones(B, R),
                 scores=torch.zeros(B), group_ids=torch.zeros(B), advantages=torch.tensor([[1.] * R, [-1.] * R]),
                 rollout_logp=rollout_logp)


def test_actor_loss_weights_each_policy_token_by_the_capped_ratio():
    logp = torch.log(torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.6, 0.7]])).requires_grad_(True)
    engine = torch.log(torch.tensor([[0.25, 0.4, 0.3], [0.4, 0.6, 0.1]]))
    on = config_from_dict({}, ["algorithm.tis_cap=2.0", "rollout.backend=vllm", "algorithm.kl_coef=0"]).algorithm
    off = config_from_dict({}, ["algorithm.kl_coef=0"]).algorithm
    mb = _batch(engine)
    loss_on, stats = actor_loss(logp, torch.zeros_like(logp), mb, on)
    loss_off, _ = actor_loss(logp, torch.zeros_like(logp), mb, off)
    # on-policy: ratio 1, so each token's loss is -A * w; token-mean over the 5 policy tokens
    w = torch.tensor([[2.0, 1.0, 0.0], [0.5, 1.0, 2.0]])        # 0.5/0.25=2, 1, (masked), 0.2/0.4, 1, 7 -> cap 2
    adv = mb.advantages
    expected = (-(adv * w) * mb.policy_mask).sum() / mb.policy_mask.sum()
    torch.testing.assert_close(loss_on, expected)
    torch.testing.assert_close(loss_off, (-adv * mb.policy_mask).sum() / mb.policy_mask.sum())
    assert stats["actor/tis_weight"] == pytest.approx(float((w * mb.policy_mask).sum() / 5))
    assert stats["actor/tis_capped"] == pytest.approx(2 / 5)
    loss_on.backward()   # gradients flow through the policy's log-probs only
    assert logp.grad is not None and torch.isfinite(logp.grad).all()


def test_tis_without_a_separate_engine_is_refused():
    with pytest.raises(ValueError, match="rollout.backend=vllm or algorithm.tis_cap=0"):
        config_from_dict({}, ["algorithm.tis_cap=2"])
    with pytest.raises(ValueError, match="algorithm.tis_cap"):
        config_from_dict({}, ["algorithm.tis_cap=-1", "rollout.backend=vllm"])
