"""Shared-prompt forward (each distinct prompt once, KV cache gathered to its rows) = the full forward,
and the one decision between the two paths (``batch.forward_mode``), logged once per run."""
import logging

import pytest
import torch

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import FULL, SHARED, collate, forward_logprobs, forward_mode, response_logits
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


def _logps_and_grads(model, batch, mode):
    model.zero_grad(set_to_none=True)
    logits = response_logits(model, batch, temperature=0.7, mode=mode)
    lp = ca.logprobs_from_logits(logits, batch.responses) * batch.valid_mask
    lp.sum().backward()
    return lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _single_token_responses() -> list[Trajectory]:
    """Every response one token long: only the prompt pass runs (no response pass)."""
    return [Trajectory(prompt_ids=t.prompt_ids, response_ids=t.response_ids[:1], response_mask=[1], group_id=t.group_id)
            for t in _grouped()]


@pytest.mark.parametrize("kind", ["qwen2", "copy", "qwen3", "llama-bias"])
@pytest.mark.parametrize("lengths", ["mixed", "one-single", "all-single"])
def test_shared_prompt_logprobs_and_gradients_equal_the_full_forward(kind, lengths, llama_family):
    """Left-padded shared prompts, injected tokens, interleaved groups, one-token responses; the demo's
    Qwen2 and copy model, and Qwen3 (q/k head norms, untied head) and Llama with biases and one KV head
    (three layers)."""
    if kind in ("qwen2", "copy"):
        model, pad = (make_tiny_model(259) if kind == "qwen2" else _copy_model()), 258
    else:
        model, pad = llama_family(kind, layers=3), 299
    model.train()
    trajs = _single_token_responses() if lengths == "all-single" else _grouped(with_single_token=lengths == "one-single")
    batch = collate(trajs, [0.0] * 9, pad_id=pad)
    assert share_prompt_unsupported(model) is None
    lp_full, g_full = _logps_and_grads(model, batch, FULL)
    lp_shared, g_shared = _logps_and_grads(model, batch, SHARED)
    assert torch.isfinite(lp_shared).all()
    torch.testing.assert_close(lp_shared, lp_full, atol=1e-5, rtol=1e-5)
    assert g_full.keys() == g_shared.keys() and len(g_full) > 0
    if kind in ("qwen3", "llama-bias"):   # every parameter (biases, head norms, untied head) gets its gradient
        assert len(g_full) == len(list(model.parameters()))
    for name in g_full:
        torch.testing.assert_close(g_shared[name], g_full[name], atol=1e-5, rtol=1e-4, msg=name)


def test_forward_logprobs_shared_in_micro_batches():
    """No-grad passes (reference / old log-probs), micro-batches that split groups."""
    model = make_tiny_model(259).eval()
    batch = collate(_grouped(), [0.0] * 9, pad_id=258)
    full, ent_f = forward_logprobs(model, batch, 4, with_entropy=True)
    shared, ent_s = forward_logprobs(model, batch, 4, with_entropy=True, mode=SHARED)
    torch.testing.assert_close(shared, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent_s * batch.valid_mask, ent_f * batch.valid_mask, atol=1e-5, rtol=1e-5)


def test_response_logits_rejects_an_unknown_mode():
    batch = collate(_grouped(), [0.0] * 9, pad_id=258)
    with pytest.raises(ValueError, match="mode='direct'; use one of full, shared-prompt"):
        response_logits(make_tiny_model(259), batch, mode="direct")


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


def _learner(model, *overrides):
    from searchr1.rl.config import config_from_dict
    from searchr1.rl.learner import Learner

    cfg = config_from_dict({}, ["algorithm.name=grpo", "algorithm.group_size=2", "data.batch_size=2",
                                "data.mini_batch_size=2", "device=cpu", *overrides])
    return Learner(cfg, model, torch.device("cpu"))


def test_forward_mode_says_which_path_and_why():
    model = make_tiny_model(259)
    assert forward_mode(model, True, 5, training=True) == (SHARED, "each distinct prompt once under its 5 samples")
    assert forward_mode(model, False, 5, training=True) == (FULL, "model.share_prompt=false")
    assert forward_mode(model, True, 1, training=True) == (FULL, "algorithm.group_size=1: no prompt repeats")
    mode, why = forward_mode(_NoCache(model), True, 5, training=False)
    assert mode == FULL and "takes no KV cache" in why


def test_models_without_a_cache_or_under_checkpointing_fall_back(tiny_dir, caplog):
    """The learner uses the full forward where the shared path cannot run, and logs its choice once."""
    from transformers import AutoModelForCausalLM

    from searchr1.rl.config import ModelConfig
    from searchr1.rl.models import wrap_policy

    def lines():
        return [r.getMessage() for r in caplog.records if "teacher-forced" in r.getMessage()]

    with caplog.at_level(logging.INFO, logger="searchr1.rl.learner"):
        on = _learner(AutoModelForCausalLM.from_pretrained(tiny_dir))
        assert (on.train_mode, on.eval_mode) == (SHARED, SHARED)
        assert lines() == ["teacher-forced passes: shared-prompt (each distinct prompt once under its 2 samples)"]
        caplog.clear()
        checkpointed = wrap_policy(AutoModelForCausalLM.from_pretrained(tiny_dir), ModelConfig(gradient_checkpointing=True))
        ckpt = _learner(checkpointed, "model.gradient_checkpointing=true")
    assert (ckpt.train_mode, ckpt.eval_mode) == (FULL, SHARED)   # no-grad passes keep the cache
    assert len(lines()) == 1
    assert lines()[0].startswith("teacher-forced passes: training full (gradient checkpointing is on")
    assert "; reference/old-log-prob shared-prompt (each distinct prompt once" in lines()[0]
    off = _learner(AutoModelForCausalLM.from_pretrained(tiny_dir), "model.share_prompt=false")
    assert (off.train_mode, off.eval_mode) == (FULL, FULL)
    ppo = _learner(AutoModelForCausalLM.from_pretrained(tiny_dir), "algorithm.name=ppo", "algorithm.group_size=1")
    assert (ppo.train_mode, ppo.eval_mode) == (FULL, FULL)


def test_the_removed_direct_forward_option_is_an_unknown_key():
    """``model.direct_forward`` (a second, hand-written forward of Llama-family models) was removed."""
    from searchr1.errors import ConfigError
    from searchr1.rl.config import config_from_dict

    with pytest.raises(ConfigError, match="unknown config key .model.direct_forward.; valid keys under model: .*share_prompt"):
        config_from_dict({"model": {"direct_forward": False}})
