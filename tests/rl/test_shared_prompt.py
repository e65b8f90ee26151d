"""Shared-prompt forward (each distinct prompt once, KV cache gathered to its rows) = the full forward."""
import pytest
import torch

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import collate, forward_logprobs, response_logits
from searchr1.rl.shared_prompt import left_pad_prompts, prompt_groups, share_prompt_unsupported
from searchr1.rollout.types import Trajectory

from .conftest import make_tiny_model


def _grouped(seed: int = 1, with_single_token: bool = False) -> list[Trajectory]:
    """3 questions x 3 samples, prompts of 3 / 7 / 11 tokens (left padding when shared), responses of
    different lengths with injected tokens, groups interleaved (not contiguous)."""
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 250, (3 + 4 * q,), generator=g).tolist() for q in range(3)]
    out = []
    for k in range(3):
        for q in (2, 0, 1):
            R = 1 if with_single_token and (q, k) == (1, 2) else 2 + (q * 3 + k * 5) % 7
            mask = [1] * R
            if R > 3 and k == 1:
                mask[1:3] = [0, 0]
            out.append(Trajectory(prompt_ids=prompts[q], response_ids=torch.randint(0, 250, (R,), generator=g).tolist(),
                                  response_mask=mask, group_id=q))
    return out


def _copy_model():
    from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM

    torch.manual_seed(0)
    return CopyQwen2ForCausalLM(CopyQwen2Config(
        copy_dim=16, vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True))


def _logps_and_grads(model, batch, share):
    model.zero_grad(set_to_none=True)
    logits = response_logits(model, batch, temperature=0.7, share_prompt=share)
    lp = ca.logprobs_from_logits(logits, batch.responses) * batch.valid_mask
    lp.sum().backward()
    return lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["qwen2", "copy"])
@pytest.mark.parametrize("single", [False, True])
def test_shared_prompt_logprobs_and_gradients_equal_the_full_forward(kind, single):
    model = make_tiny_model(259) if kind == "qwen2" else _copy_model()
    model.train()
    batch = collate(_grouped(with_single_token=single), [0.0] * 9, pad_id=258)
    assert share_prompt_unsupported(model) is None
    lp_full, g_full = _logps_and_grads(model, batch, share=False)
    lp_shared, g_shared = _logps_and_grads(model, batch, share=True)
    assert torch.isfinite(lp_shared).all()
    torch.testing.assert_close(lp_shared, lp_full, atol=1e-5, rtol=1e-5)
    assert g_full.keys() == g_shared.keys() and len(g_full) > 0
    for name in g_full:
        torch.testing.assert_close(g_shared[name], g_full[name], atol=1e-5, rtol=1e-4, msg=name)


def test_forward_logprobs_shared_in_micro_batches():
    """No-grad passes (reference / old log-probs), micro-batches that split groups."""
    model = make_tiny_model(259).eval()
    batch = collate(_grouped(), [0.0] * 9, pad_id=258)
    full, ent_f = forward_logprobs(model, batch, 4, with_entropy=True)
    shared, ent_s = forward_logprobs(model, batch, 4, with_entropy=True, share_prompt=True)
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent_s * batch.valid_mask, ent_f * batch.valid_mask, atol=1e-5, rtol=1e-5)


def test_prompt_groups_and_left_padding():
    ids = torch.tensor([[5, 6, 7, 1], [9, 1, 2, 0], [5, 6, 7, 3], [9, 1, 4, 4]])
    plen = torch.tensor([3, 2, 3, 2])
    first, inv = prompt_groups(ids, plen)
    assert first.tolist() == [0, 1] and inv.tolist() == [0, 1, 0, 1]
    p_ids, p_mask, p_pos = left_pad_prompts(ids[first], plen[first])
    assert p_ids.tolist() == [[5, 6, 7], [0, 9, 1]]
    assert p_mask.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert p_pos.tolist() == [[0, 1, 2], [0, 0, 1]]


class _NoCache(torch.nn.Module):
    """A causal LM whose forward has no KV cache argument."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False):
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def test_models_without_a_cache_or_under_checkpointing_fall_back(tiny_dir):
    """The learner uses the full forward, and says why, where the shared path cannot run."""
    from transformers import AutoModelForCausalLM

    from searchr1.rl.config import config_from_dict
    from searchr1.rl.learner import Learner

    assert "KV cache" in share_prompt_unsupported(_NoCache(make_tiny_model(259)))
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    cfg = config_from_dict({}, ["algorithm.name=grpo", "algorithm.group_size=2", "data.batch_size=2",
                                "data.mini_batch_size=2", "model.gradient_checkpointing=true", "device=cpu"])
    from searchr1.rl.models import wrap_policy

    learner = Learner(cfg, wrap_policy(model, cfg.model), torch.device("cpu"))
    assert (learner.share_train, learner.share_eval) == (False, True)   # no-grad passes keep the cache
    cfg.model.share_prompt = False
    off = Learner(cfg, AutoModelForCausalLM.from_pretrained(tiny_dir), torch.device("cpu"))
    assert (off.share_train, off.share_eval) == (False, False)
