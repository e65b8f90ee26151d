"""Shared-prompt forward (each distinct prompt once, KV cache gathered to its rows) = the full forward."""
from dataclasses import replace

import pytest
import torch

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import collate, forward_logprobs, response_logits
from searchr1.models.llama_direct import unsupported_reason
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


def _logps_and_grads(model, batch, share, direct=False):
    model.zero_grad(set_to_none=True)
    logits = response_logits(model, batch, temperature=0.7, share_prompt=share, direct=direct)
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


def _single_token_responses() -> list[Trajectory]:
    """Every response one token long: only the prompt pass runs (no response pass)."""
    return [Trajectory(prompt_ids=t.prompt_ids, response_ids=t.response_ids[:1], response_mask=[1], group_id=t.group_id)
            for t in _grouped()]


@pytest.mark.parametrize("kind", ["qwen2", "qwen3", "llama-bias"])
@pytest.mark.parametrize("lengths", ["mixed", "one-single", "all-single", "unique-prompts"])
def test_direct_forward_logprobs_and_gradients_equal_the_full_forward(kind, lengths, llama_family, monkeypatch):
    """Three layers (a middle one, and the last one that runs the prompt's query and MLP at its last
    position only), left-padded shared prompts, injected tokens, interleaved groups; and a batch where
    no prompt repeats (PPO with one sample per question), which also takes the direct pass."""
    from searchr1.rl import shared_prompt

    model = llama_family(kind, layers=3).train()
    trajs = _single_token_responses() if lengths == "all-single" else _grouped(with_single_token=lengths == "one-single")
    if lengths == "unique-prompts":
        trajs = [replace(t, prompt_ids=t.prompt_ids + [i], group_id=i) for i, t in enumerate(trajs)]
    batch = collate(trajs, [0.0] * 9, pad_id=299)
    assert unsupported_reason(model, training=True) is None
    lp_full, g_full = _logps_and_grads(model, batch, share=False)
    calls = []
    direct_logits = shared_prompt.direct_logits
    monkeypatch.setattr(shared_prompt, "direct_logits", lambda *a: calls.append(len(a[1])) or direct_logits(*a))
    lp_direct, g_direct = _logps_and_grads(model, batch, share=True, direct=True)
    assert calls == [9 if lengths == "unique-prompts" else 3]       # distinct prompts run
    assert torch.isfinite(lp_direct).all()
    torch.testing.assert_close(lp_direct, lp_full, atol=1e-5, rtol=1e-5)
    assert g_full.keys() == g_direct.keys() and len(g_full) == len(list(model.parameters()))
    for name in g_full:
        torch.testing.assert_close(g_direct[name], g_full[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("precision", ["bf16-weights", "bf16-autocast"])
def test_direct_forward_in_bf16_matches_the_transformers_shared_pass(precision, llama_family):
    """The fp32-normalise-then-cast RMSNorm of bf16 weights, and bf16 autocast over fp32 weights."""
    from searchr1.rl.batch import autocast_ctx

    model = llama_family("qwen2", layers=3)
    if precision == "bf16-weights":
        model = model.to(torch.bfloat16)
    batch = collate(_grouped(), [0.0] * 9, pad_id=299)
    with torch.no_grad(), autocast_ctx("cpu", precision == "bf16-autocast"):
        ref = response_logits(model, batch, share_prompt=True)
        got = response_logits(model, batch, share_prompt=True, direct=True)
    assert got.dtype == ref.dtype
    real = batch.valid_mask.bool()
    torch.testing.assert_close(got[real].float(), ref[real].float(), atol=3e-2, rtol=3e-2)


def test_learner_runs_the_direct_passes_where_it_can_and_says_why_not(tiny_dir, llama_family, caplog):
    import logging

    from transformers import AutoModelForCausalLM

    from searchr1.rl.config import config_from_dict
    from searchr1.rl.learner import Learner

    def learner(model, *overrides):
        cfg = config_from_dict({}, ["algorithm.name=grpo", "algorithm.group_size=2", "data.batch_size=2",
                                    "data.mini_batch_size=2", "device=cpu", *overrides])
        return Learner(cfg, model, torch.device("cpu"))

    on = learner(AutoModelForCausalLM.from_pretrained(tiny_dir))
    assert (on.direct_train, on.direct_eval) == (True, True)
    off = learner(AutoModelForCausalLM.from_pretrained(tiny_dir), "model.direct_forward=false")
    assert (off.direct_train, off.direct_eval) == (False, False)
    with caplog.at_level(logging.INFO, logger="searchr1.rl.learner"):
        copy_lm = learner(_copy_model())
        dropout = llama_family("qwen2")
        dropout.config.attention_dropout = 0.1
        for layer in dropout.model.layers:
            layer.self_attn.attention_dropout = 0.1
        dropped = learner(dropout)
    assert (copy_lm.direct_train, copy_lm.direct_eval) == (False, False)
    assert "CopyQwen2ForCausalLM is not one of" in caplog.text
    assert (dropped.direct_train, dropped.direct_eval) == (False, True)    # dropout is off in the no-grad passes
    assert "attention dropout (0.1) in training" in caplog.text
