"""The CUDA paths of the HF rollout backend and the trainer (skipped without a GPU).

CPU runs cover the algorithms; these check that nothing is left on the wrong device and
that CUDA computes what the CPU computes (fp32), and that a bf16-autocast training run
on the GPU updates the policy and writes a loadable checkpoint.
"""
import copy

import pytest
import torch

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import FULL, SHARED, collate, response_logits
from searchr1.rl.config import AlgorithmConfig
from searchr1.rl.learner import compute_actor_loss
from searchr1.rl.trainer import Trainer
from searchr1.rollout.backends.base import TurnParams
from searchr1.rollout.backends.hf import HFBackend

from .test_shared_prompt import _copy_model, _grouped
from .test_trainer import letter_reward

pytestmark = pytest.mark.gpu


def _loss_and_grads(model, batch, mode):
    model.zero_grad(set_to_none=True)
    logits = response_logits(model, batch, temperature=0.7, mode=mode)
    batch.advantages = torch.linspace(-1, 1, batch.responses.numel(), device=logits.device).view_as(batch.responses)
    batch.ref_logp = torch.full(batch.responses.shape, -5.0, device=logits.device)
    loss, _ = compute_actor_loss(logits, batch, AlgorithmConfig(name="grpo", entropy_coef=0.01), kl_coef=0.1)
    loss.backward()
    lp = ca.logprobs_from_logits(logits, batch.responses) * batch.valid_mask
    return loss.detach().cpu(), lp.detach().cpu(), {n: p.grad.cpu() for n, p in model.named_parameters()
                                                    if p.grad is not None}


@pytest.mark.parametrize("kind", ["qwen2", "copy"])
def test_cuda_loss_and_gradients_equal_cpu(kind):
    from .conftest import make_tiny_model

    cpu = make_tiny_model(259) if kind == "qwen2" else _copy_model()
    gpu = copy.deepcopy(cpu).cuda()
    batch = collate(_grouped(), [0.0] * 9, pad_id=258)
    ref = _loss_and_grads(cpu, batch, FULL)
    for mode in (FULL, SHARED):
        loss, lp, grads = _loss_and_grads(gpu, batch.to("cuda"), mode)
        torch.testing.assert_close(loss, ref[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(lp, ref[1], atol=1e-4, rtol=1e-4)
        assert grads.keys() == ref[2].keys()
        for name in grads:
            torch.testing.assert_close(grads[name], ref[2][name], atol=1e-4, rtol=1e-3, msg=name)


def test_cuda_greedy_generation_equals_cpu(tiny):
    model, tok = tiny
    prompts = [tok.encode("Q: what is 3\nA:"), tok.encode("Q: hi\nA:"), tok.encode("Q: what is 3\nA:")]
    params = TurnParams(do_sample=False)
    outs = []
    for dev in ("cpu", "cuda"):
        backend = HFBackend(copy.deepcopy(model).to(dev), tok, device=dev, dtype=torch.float32, share_prefill=True)
        outs.append(backend.open(prompts).generate([0, 1, 2], [[], [], []], [12, 12, 12], params))
    assert [g.token_ids for g in outs[0]] == [g.token_ids for g in outs[1]]
    for a, b in zip(*outs):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


def test_trainer_on_cuda_with_bf16_autocast_updates_and_saves(tiny, questions, tmp_path, tiny_config):
    from transformers import AutoModelForCausalLM

    model, tok = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = tiny_config(tmp_path, total_steps=3, device="cuda", model__bf16_autocast="true")
    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, reward_fn=letter_reward(tok))
    m = tr.fit()
    assert next(tr.policy.parameters()).is_cuda
    after = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > 0.9 * len(before)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert m["actor/skipped_updates"] == 0.0  # no non-finite loss or gradient under bf16
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, after[k], msg=k)
