"""The update phase's shortcuts give the numbers of the plain computation they replace."""
import torch

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import collate, forward_logprobs, is_right_padded, response_logits
from searchr1.rollout.types import Trajectory


def _trajectories(n: int = 6) -> list[Trajectory]:
    """Rows of different prompt and response lengths (so the batch is padded), some injected tokens."""
    g = torch.Generator().manual_seed(3)
    out = []
    for i in range(n):
        P, R = 2 + (i * 5) % 7, 3 + (i * 3) % 8
        mask = [1] * R
        if i % 3 == 1:
            mask[1:3] = [0, 0]
        out.append(Trajectory(prompt_ids=torch.randint(0, 250, (P,), generator=g).tolist(),
                              response_ids=torch.randint(0, 250, (R,), generator=g).tolist(),
                              response_mask=mask, group_id=i // 2))
    return out


def _reference_logits(model, batch):
    """The plain computation: full forward with the attention mask, every position projected, then gathered."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    return logits.gather(1, batch.resp_index.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))


def test_fused_logprobs_and_entropy_match_the_separate_functions():
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(3, 5, 11, generator=g)).requires_grad_(True)
    tokens = torch.randint(0, 11, (3, 5), generator=g)
    lp, ent = ca.logprobs_and_entropy(logits, tokens)
    torch.testing.assert_close(lp, ca.logprobs_from_logits(logits, tokens))
    torch.testing.assert_close(ent, ca.entropy_from_logits(logits))
    assert not ent.requires_grad                                         # logged only: no graph kept
    (grad,) = torch.autograd.grad(lp.sum(), logits)
    ref = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).sum()
    (ref_grad,) = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(grad, ref_grad)
    _, ent_g = ca.logprobs_and_entropy(logits, tokens, entropy_grad=True)   # entropy as a loss term
    (eg,) = torch.autograd.grad(ent_g.sum(), logits)
    (eg_ref,) = torch.autograd.grad(ca.entropy_from_logits(logits).sum(), logits)
    torch.testing.assert_close(eg, eg_ref)


def test_right_padding_detection():
    assert is_right_padded(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert not is_right_padded(torch.tensor([[0, 1, 1], [1, 1, 1]]))    # left padding
    assert not is_right_padded(torch.tensor([[1, 0, 1], [1, 1, 1]]))    # a hole


def test_response_logits_equal_the_masked_full_forward(tiny):
    """No attention mask on right-padded rows + logits only from the first response position on."""
    model, _ = tiny
    batch = collate(_trajectories(), [0.0] * 6, pad_id=257)
    assert is_right_padded(batch.attention_mask) and int(batch.attention_mask.sum()) < batch.attention_mask.numel()
    fast, ref = response_logits(model, batch), _reference_logits(model, batch)
    real = batch.valid_mask.bool()
    torch.testing.assert_close(fast[real], ref[real], atol=1e-5, rtol=1e-5)
    # and the same gradients on the weights through a masked loss
    lp_f = ca.logprobs_from_logits(fast, batch.responses)
    grads_f = torch.autograd.grad((lp_f * batch.valid_mask).sum(), list(model.parameters()))
    lp_r = ca.logprobs_from_logits(_reference_logits(model, batch), batch.responses)
    grads_r = torch.autograd.grad((lp_r * batch.valid_mask).sum(), list(model.parameters()))
    for a, b in zip(grads_f, grads_r):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


class _PlainForward(torch.nn.Module):
    """A causal LM whose forward takes no ``logits_to_keep`` (the generic path)."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask=None, use_cache=False):
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)


def test_response_logits_without_logits_to_keep(tiny):
    model, _ = tiny
    batch = collate(_trajectories(), [0.0] * 6, pad_id=257)
    fast = response_logits(_PlainForward(model), batch)
    ref = _reference_logits(model, batch)
    real = batch.valid_mask.bool()
    torch.testing.assert_close(fast[real], ref[real], atol=1e-5, rtol=1e-5)


def _learner(tiny_dir, **over):
    from transformers import AutoModelForCausalLM

    from searchr1.rl.config import config_from_dict
    from searchr1.rl.learner import Learner

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    args = {"algorithm.name": "grpo", "algorithm.group_size": 2, "algorithm.kl_coef": 0.05,
            "optimizer.actor_lr": 0.01, "optimizer.actor_warmup_ratio": 0, "data.batch_size": 3,
            "data.mini_batch_size": 3, "data.micro_batch_size": 4, "total_steps": 1, "device": "cpu", **over}
    return Learner(config_from_dict({}, [f"{k}={v}" for k, v in args.items()]), model, torch.device("cpu")), model


def test_on_policy_shortcut_equals_an_explicit_old_logprob_pass(tiny_dir):
    """One epoch, one mini-batch: old log-probs = the training forward, detached (ratio 1)."""
    scores = [1.0, 0.0, 0.5, 0.5, 0.0, 1.0]
    fast, m_fast = _learner(tiny_dir)
    assert fast._on_policy()
    b_fast = collate(_trajectories(), scores, pad_id=257)
    fast.prepare(b_fast)
    assert b_fast.old_logp is None
    stats = fast.update(b_fast, seed=0)

    slow, m_slow = _learner(tiny_dir)
    b_slow = collate(_trajectories(), scores, pad_id=257)
    slow.prepare(b_slow)
    # the extra pass, through the same forward path as the training pass (the shared-prompt one here: a
    # full forward's rounding differs by ~1e-7, which Adam's first step amplifies on tiny gradients)
    assert slow.train_mode == "shared-prompt"
    b_slow.old_logp, ent = forward_logprobs(m_slow, b_slow, 4, with_entropy=True, mode=slow.train_mode)
    slow.update(b_slow, seed=0)
    for (k, a), (_, b) in zip(m_fast.state_dict().items(), m_slow.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)
    # the logged entropy is the pre-update policy's mean entropy over policy tokens
    mask = b_slow.policy_mask.float()
    assert abs(stats["actor/entropy"] - float((ent * mask).sum() / mask.sum())) < 1e-5
    assert stats["actor/clipfrac"] == 0.0 and stats["actor/approx_kl"] == 0.0
