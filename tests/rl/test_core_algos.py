"""Advantages, KL and losses: hand-computed values and loop-vs-vectorized equivalence."""
import math

import pytest
import torch

from searchr1.rl import core_algos as ca


# ----------------------------------------------------------------------------- loop references
def gae_loop(rewards, values, mask, gamma, lam):
    """Per-row, per-token GAE that skips injected tokens (the documented semantics)."""
    B, T = mask.shape
    adv = torch.zeros(B, T)
    for b in range(B):
        idx = [t for t in range(T) if mask[b, t] == 1]
        last, next_v = 0.0, 0.0
        for t in reversed(idx):
            delta = float(rewards[b, t]) + gamma * next_v - float(values[b, t])
            last = delta + gamma * lam * last
            adv[b, t] = last
            next_v = float(values[b, t])
    return adv, (adv + values) * mask


def grpo_loop(rewards, groups, norm_std, eps=1e-6):
    out = []
    for i, g in enumerate(groups):
        members = [float(rewards[j]) for j in range(len(groups)) if groups[j] == g]
        if len(members) < 2:
            out.append(0.0)
            continue
        mean = sum(members) / len(members)
        std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
        a = float(rewards[i]) - mean
        out.append(a / (std + eps) if norm_std else a)
    return torch.tensor(out)


# ----------------------------------------------------------------------------- GAE
def test_gae_hand_computed_skips_injected_tokens():
    mask = torch.tensor([[1, 1, 0, 1]])
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 9.0, 0.8]])  # the 9.0 at the injected token must not matter
    adv, ret = ca.gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.5, 0.4, 0.0, 0.2]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 0.0, 1.0]]))
    adv, _ = ca.gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
    # A3 = 1 - .8 = .2 ; A2 = (.9*.8 - .6) + .72*.2 = .264 ; A1 = (.9*.6 - .5) + .72*.264
    torch.testing.assert_close(adv, torch.tensor([[0.04 + 0.72 * 0.264, 0.264, 0.0, 0.2]]))


@pytest.mark.parametrize("gamma,lam", [(1.0, 1.0), (0.99, 0.95), (0.5, 0.0)])
def test_gae_vectorized_matches_loop(gamma, lam):
    g = torch.Generator().manual_seed(0)
    B, T = 6, 17
    mask = (torch.rand(B, T, generator=g) > 0.3).long()
    mask[0] = 0  # a row without policy tokens
    mask[1, 10:] = 0  # right padding
    rewards = torch.randn(B, T, generator=g)
    values = torch.randn(B, T, generator=g)
    adv, ret = ca.gae_advantages(rewards, values, mask, gamma, lam)
    adv_ref, ret_ref = gae_loop(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, adv_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, ret_ref, atol=1e-5, rtol=1e-5)
    assert torch.all(adv[mask == 0] == 0)


# ----------------------------------------------------------------------------- group advantages
def test_grpo_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.3])
    groups = torch.tensor([0, 0, 0, 0, 7, 7, 9])
    adv = ca.group_advantages(rewards, groups)
    s = 1.0 / math.sqrt(3.0) + 1e-6  # unbiased std of [1,0,0,1] is sqrt(1/3)
    expected = torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0, 0.0])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ca.group_advantages(rewards, groups, norm_std=False),
                               torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0]))


def test_grpo_matches_loop_on_random_groups():
    g = torch.Generator().manual_seed(1)
    rewards = torch.rand(40, generator=g)
    groups = torch.randint(0, 9, (40,), generator=g)
    for norm in (True, False):
        torch.testing.assert_close(ca.group_advantages(rewards, groups, norm_std=norm),
                                   grpo_loop(rewards, groups.tolist(), norm), atol=1e-5, rtol=1e-5)


def test_rloo_and_reinforce_hand_computed():
    rewards = torch.tensor([1.0, 0.0, 0.5, 2.0, 4.0])
    groups = torch.tensor([0, 0, 0, 1, 1])
    # row 0: others mean (0 + .5)/2 = .25 -> .75 ; row 1: (1+.5)/2 -> -.75 ; row 2: .5 - .5 = 0
    torch.testing.assert_close(ca.rloo_advantages(rewards, groups), torch.tensor([0.75, -0.75, 0.0, -2.0, 2.0]))
    torch.testing.assert_close(ca.reinforce_baseline_advantages(rewards), rewards - 1.5)


def test_outcome_rewards_land_on_last_policy_token():
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]])
    out = ca.outcome_token_rewards(torch.tensor([2.0, 5.0, -1.0]), mask)
    expected = torch.zeros(3, 5)
    expected[0, 3], expected[2, 0] = 2.0, -1.0
    torch.testing.assert_close(out, expected)


# ----------------------------------------------------------------------------- KL
def test_kl_estimators_hand_computed():
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    torch.testing.assert_close(ca.kl_penalty(logp, ref, "kl"), torch.tensor([[0.5, -1.0]]))
    torch.testing.assert_close(ca.kl_penalty(logp, ref, "abs"), torch.tensor([[0.5, 1.0]]))
    torch.testing.assert_close(ca.kl_penalty(logp, ref, "mse"), torch.tensor([[0.125, 0.5]]))
    k3 = torch.tensor([[math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]])
    torch.testing.assert_close(ca.kl_penalty(logp, ref, "low_var_kl"), k3)
    # clamped: a huge log-ratio stays finite and <= 10
    big = ca.kl_penalty(torch.tensor([[-100.0]]), torch.tensor([[0.0]]), "low_var_kl")
    assert float(big) == 10.0
    with pytest.raises(ValueError, match="low_var_kl"):
        ca.kl_penalty(logp, ref, "k4")


def test_kl_folded_into_rewards_and_controllers():
    logp, ref = torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    shaped, kl = ca.apply_kl_penalty(torch.tensor([[0.0, 1.0, 0.0]]), logp, ref, mask, coef=0.1, kind="kl")
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0]]))
    torch.testing.assert_close(shaped, torch.tensor([[-0.05, 1.1, 0.0]]))
    ctl = ca.AdaptiveKLController(0.1, target=1.0, horizon=10)
    ctl.update(current_kl=3.0, n_steps=5)  # error clipped to +0.2 -> x1.1
    assert ctl.value == pytest.approx(0.11)
    ctl.update(current_kl=0.9, n_steps=10)  # error -0.1 -> x0.9
    assert ctl.value == pytest.approx(0.099)


# ----------------------------------------------------------------------------- losses
def test_aggregate_loss_modes():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert float(ca.aggregate_loss(loss, mask, "token-mean")) == pytest.approx(10 / 4)
    assert float(ca.aggregate_loss(loss, mask, "seq-mean-token-mean")) == pytest.approx((2 + 4) / 2)
    assert float(ca.aggregate_loss(loss, mask, "seq-mean-token-sum")) == pytest.approx((6 + 4) / 2)
    assert float(ca.aggregate_loss(loss, mask, "token-mean", norm=8)) == pytest.approx(10 / 8)
    with pytest.raises(ValueError, match="token-mean"):
        ca.aggregate_loss(loss, mask, "mean")


def test_micro_batches_with_global_norm_equal_the_full_batch():
    g = torch.Generator().manual_seed(3)
    loss = torch.rand(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.4).long()
    for mode in ca.AGG_MODES:
        full = ca.aggregate_loss(loss, mask, mode)
        n = ca.agg_count(mask, mode)
        parts = sum(ca.aggregate_loss(loss[i:i + 2], mask[i:i + 2], mode, norm=n) for i in range(0, 6, 2))
        torch.testing.assert_close(parts, full)


def test_clipped_policy_loss_hand_computed():
    old = torch.zeros(1, 4)
    # ratios: e^.5 = 1.6487 (clipped for A>0), e^-.5 = .6065 (clipped for A<0), 1.1, 1.0
    logp = torch.tensor([[0.5, -0.5, math.log(1.1), 0.0]])
    adv = torch.tensor([[1.0, -1.0, 2.0, 3.0]])
    mask = torch.ones(1, 4)
    loss, st = ca.ppo_policy_loss(logp, old, adv, mask, clip_eps=0.2)
    per_tok = [-1.2, 0.8, -2.2, -3.0]
    assert float(loss) == pytest.approx(sum(per_tok) / 4, rel=1e-5)
    assert float(st.clipfrac) == pytest.approx(0.5)
    # dual clip caps the loss of a negative-advantage token with a huge ratio at -A*c
    loss, st = ca.ppo_policy_loss(torch.tensor([[2.0]]), torch.zeros(1, 1), torch.tensor([[-1.0]]),
                                  torch.ones(1, 1), clip_eps=0.2, dual_clip_c=3.0)
    assert float(loss) == pytest.approx(3.0) and float(st.dual_clipfrac) == 1.0
    loss, _ = ca.ppo_policy_loss(torch.tensor([[2.0]]), torch.zeros(1, 1), torch.tensor([[-1.0]]),
                                 torch.ones(1, 1), clip_eps=0.2)
    assert float(loss) == pytest.approx(math.exp(2.0), rel=1e-5)


def test_clipped_loss_gradient_is_zero_where_clipped():
    logp = torch.tensor([[0.5, 0.05]], requires_grad=True)
    loss, _ = ca.ppo_policy_loss(logp, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2))
    loss.backward()
    assert logp.grad[0, 0] == 0.0 and logp.grad[0, 1] < 0.0


def test_value_loss_hand_computed():
    v = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.0, 0.0]])
    ret = torch.tensor([[2.0, 1.0]])
    mask = torch.ones(1, 2)
    # token 0: unclipped err (1-2)^2=1, clipped v=.5 -> (.5-2)^2=2.25 -> max 2.25 ; token 1: 1
    loss, frac = ca.value_loss(v, old, ret, mask, clip_range=0.5)
    assert float(loss) == pytest.approx(0.5 * (2.25 + 1.0) / 2)
    assert float(frac) == pytest.approx(0.5)
    loss, _ = ca.value_loss(v, old, ret, mask, clip_range=None)
    assert float(loss) == pytest.approx(0.5 * (1.0 + 1.0) / 2)


def test_entropy_and_logprobs_from_logits():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [10.0, -10.0, -10.0, -10.0]]])
    ent = ca.entropy_from_logits(logits)
    assert float(ent[0, 0]) == pytest.approx(math.log(4))
    assert float(ent[0, 1]) < 1e-6
    lp = ca.logprobs_from_logits(logits, torch.tensor([[2, 0]]))
    torch.testing.assert_close(lp, torch.tensor([[-math.log(4), 0.0]]), atol=1e-6, rtol=0)


def test_whiten_and_explained_variance():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    w = ca.masked_whiten(x, mask)
    assert float(w[0, 2]) == 0.0 and float(ca.masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-6)
    ret = torch.tensor([[1.0, 2.0, 3.0]])
    assert float(ca.explained_variance(ret, ret, torch.ones(1, 3))) == pytest.approx(1.0)
