"""Log-probs from hidden states in chunks equal the full-logits path: values and gradients."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from searchr1.rl import core_algos as ca
from searchr1.rl.batch import FULL, SHARED, collate, forward_logprobs, response_logprobs
from searchr1.rl.config import AlgorithmConfig, config_from_dict
from searchr1.rl.lm_head import hidden_unsupported, split_lm
from searchr1.rl.learner import Learner, actor_loss
from searchr1.rollout.types import Trajectory

V = 300


def _qwen(tied: bool, seed: int = 0):
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied))


def _llama(seed: int = 0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False))


def _batch(shared: bool = False):
    g = torch.Generator().manual_seed(5)
    trajs = []
    for i in range(6):
        p = 3 + (i // 2 if shared else i) % 5
        prompt = torch.randint(0, V, (p,), generator=torch.Generator().manual_seed(i // 2 if shared else i)).tolist()
        r = 2 + (i * 3) % 7
        mask = [1] * r
        if i % 3 == 1:
            mask[1] = 0
        trajs.append(Trajectory(prompt_ids=prompt, response_ids=torch.randint(0, V, (r,), generator=g).tolist(),
                                response_mask=mask, group_id=i // 2))
    b = collate(trajs, [float(i % 2) for i in range(6)], pad_id=0)
    b.advantages = torch.randn(b.responses.shape, generator=g) * b.policy_mask
    return b


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _loss_and_grads(model, batch, chunk, mode=FULL, temperature=0.7, entropy_coef=0.01):
    model.zero_grad(set_to_none=True)
    algo = AlgorithmConfig(name="grpo", entropy_coef=entropy_coef, kl_in="loss")
    batch.ref_logp = torch.zeros(batch.responses.shape) - 5.0
    logp, ent = response_logprobs(model, batch, temperature, mode, chunk, entropy_grad=entropy_coef > 0)
    loss, _ = actor_loss(logp, ent, batch, algo, kl_coef=0.1)
    loss.backward()
    return logp.detach(), ent.detach(), _grads(model)


@pytest.mark.parametrize("make", [lambda: _qwen(True), lambda: _qwen(False), _llama], ids=["qwen2-tied", "qwen2", "llama"])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunked_values_and_gradients_equal_full(make, chunk):
    model, batch = make(), _batch()
    lp_f, ent_f, g_f = _loss_and_grads(model, batch, 0)
    lp_c, ent_c, g_c = _loss_and_grads(model, batch, chunk)
    real = batch.valid_mask.bool()
    torch.testing.assert_close(lp_c[real], lp_f[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_c[real], ent_f[real], atol=1e-5, rtol=0)
    assert g_f.keys() == g_c.keys() and len(g_f) > 0
    for n in g_f:
        torch.testing.assert_close(g_c[n], g_f[n], atol=1e-6, rtol=1e-4, msg=n)
    assert any(float(g.abs().sum()) > 0 for g in g_f.values())


def test_chunked_shared_prompt_path_equals_full_logits():
    model, batch = _qwen(True), _batch(shared=True)
    lp_f, ent_f, g_f = _loss_and_grads(model, batch, 0, mode=FULL)
    lp_c, ent_c, g_c = _loss_and_grads(model, batch, 5, mode=SHARED)
    real = batch.valid_mask.bool()
    torch.testing.assert_close(lp_c[real], lp_f[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_c[real], ent_f[real], atol=1e-5, rtol=0)
    for n in g_f:
        torch.testing.assert_close(g_c[n], g_f[n], atol=1e-5, rtol=1e-3, msg=n)


def test_chunked_under_lora_including_a_wrapped_lm_head():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_qwen(False), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"]))
    for n, p in model.named_parameters():       # move the adapters off their zero init so they matter
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    assert hasattr(split_lm(model)[1], "lora_A")               # the head is peft's LoRA layer
    batch = _batch()
    lp_f, _, g_f = _loss_and_grads(model, batch, 0)
    lp_c, _, g_c = _loss_and_grads(model, batch, 4)
    real = batch.valid_mask.bool()
    torch.testing.assert_close(lp_c[real], lp_f[real], atol=1e-5, rtol=0)
    assert any("lm_head" in n for n in g_f)
    for n in g_f:
        torch.testing.assert_close(g_c[n], g_f[n], atol=1e-6, rtol=1e-4, msg=n)
    with model.disable_adapter():                # the LoRA reference: base weights only
        ref_f, _ = forward_logprobs(model, batch, 4)
        ref_c, _ = forward_logprobs(model, batch, 4, chunk_size=3)
    torch.testing.assert_close(ref_c, ref_f, atol=1e-5, rtol=0)
    assert float((ref_f - lp_f * batch.valid_mask).abs().max()) > 1e-3


def test_no_grad_pass_in_micro_batches_equals_full():
    model, batch = _qwen(True), _batch()
    full, ent_f = forward_logprobs(model, batch, 4, temperature=0.5, with_entropy=True)
    chunked, ent_c = forward_logprobs(model, batch, 4, temperature=0.5, with_entropy=True, chunk_size=6)
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_c, ent_f, atol=1e-5, rtol=0)


def test_chunked_function_on_a_plain_linear_head():
    g = torch.Generator().manual_seed(1)
    head = torch.nn.Linear(8, 50, bias=True)
    h = torch.randn(3, 4, 8, generator=g, requires_grad=True)
    tok = torch.randint(0, 50, (3, 4), generator=g)
    lp, ent = ca.chunked_logprobs_and_entropy(h, head, tok, 5, temperature=2.0, entropy_grad=True)
    lp_r, ent_r = ca.logprobs_and_entropy(head(h) / 2.0, tok, entropy_grad=True)
    torch.testing.assert_close(lp, lp_r)
    torch.testing.assert_close(ent, ent_r)
    (gh,) = torch.autograd.grad((lp + ent).sum(), h)
    (gh_r,) = torch.autograd.grad((lp_r + ent_r).sum(), h)
    torch.testing.assert_close(gh, gh_r)
    with pytest.raises(ValueError, match="chunk_size"):
        ca.chunked_logprobs_and_entropy(h, head, tok, 0)


def test_a_copy_head_model_keeps_the_full_logits(tmp_path, caplog):
    """A model whose logits are not lm_head(hidden) is detected, and the learner says so."""
    from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM

    torch.manual_seed(0)
    copy = CopyQwen2ForCausalLM(CopyQwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    assert "not lm_head" in hidden_unsupported(copy)
    assert hidden_unsupported(_qwen(True)) is None
    cfg = config_from_dict({}, ["model.path=unused", "actor.logprob_chunk_size=8", "device=cpu",
                                f"output_dir={tmp_path}"])
    with caplog.at_level("WARNING"):
        learner = Learner(cfg, copy, torch.device("cpu"))
    assert learner.chunk == 0 and "ignored, full logits" in caplog.text
    assert Learner(cfg, _qwen(True), torch.device("cpu")).chunk == 8


def test_chunk_size_config_rejects_negative():
    with pytest.raises(ValueError, match="actor.logprob_chunk_size"):
        config_from_dict({}, ["actor.logprob_chunk_size=-1"])


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_learner_update_with_chunks_equals_full(tmp_path, algo):
    """One prepare + update: the optimizer receives the same gradients (policy and critic) with and without
    chunking. Compared through AdamW's first moment after its one step, (1 - beta1) * grad: the weights
    themselves are not a fair comparison, since Adam's first step is about lr * sign(grad), so a 1e-9
    rounding difference in a gradient element near eps moves that weight by up to lr."""
    import copy

    extra = ["algorithm.group_size=2", "algorithm.kl_in=loss"] if algo == "grpo" else ["algorithm.group_size=1"]
    base = ["model.path=unused", "device=cpu", f"output_dir={tmp_path}", f"algorithm.name={algo}",
            "data.batch_size=6", "data.mini_batch_size=6", "data.micro_batch_size=4", "optimizer.actor_lr=0.01",
            "optimizer.critic_lr=0.01", "optimizer.actor_warmup_ratio=0", "optimizer.critic_warmup_ratio=0",
            "rollout.temperature=0.8", "total_steps=2", *extra]
    models = []
    for chunk in (0, 5):
        cfg = config_from_dict({}, base + [f"actor.logprob_chunk_size={chunk}"])
        torch.manual_seed(0)
        learner = Learner(cfg, _qwen(True), torch.device("cpu"))
        batch = copy.deepcopy(_batch(shared=True))
        batch.advantages = None
        learner.prepare(batch)
        m = learner.update(batch, seed=0)
        models.append((learner, m))
    (a, ma), (b, mb) = models
    assert b.chunk == 5 and a.chunk == 0

    def same_first_moments(opt_a, opt_b, params_a, params_b):
        moved = 0
        for (n, pa), pb in zip(params_a, params_b):
            sa, sb = opt_a.state[pa], opt_b.state[pb]
            assert float(sa["step"]) == float(sb["step"]) == 1.0, n
            scale = float(sa["exp_avg"].abs().max())
            moved += scale > 0          # the critic's zero-initialised value head shields its body on step one
            torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], atol=1e-5 * max(scale, 1e-12), rtol=1e-4,
                                       msg=n)
        return moved

    n_policy = sum(1 for _ in a.policy.parameters())
    assert same_first_moments(a.opt, b.opt, a.policy.named_parameters(), b.policy.parameters()) == n_policy
    assert abs(ma["actor/entropy"] - mb["actor/entropy"]) < 1e-5
    if algo == "ppo":
        assert same_first_moments(a.copt, b.copt, a.critic.named_parameters(), b.critic.parameters()) >= 1
    # the weights did move, and the two runs agree to well under one Adam step (lr = 0.01) everywhere
    before = _qwen(True)
    assert any(float((p.detach() - q.detach()).abs().max()) > 1e-4 for p, q in zip(a.policy.parameters(), before.parameters()))
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        assert float((pa.detach() - pb.detach()).abs().max()) < 5e-3


@pytest.mark.slow
def test_peak_memory_of_an_update_at_qwen_vocabulary_is_far_below_full_logits():
    """Peak RSS growth of one learner update (fresh subprocesses, Qwen's 151,936 vocabulary, 300
    response tokens): chunked well below the full logits, same gradient norm."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]

    def run(chunk):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_logprob_memory", "--child", "300", str(chunk)],
                             capture_output=True, text=True, cwd=root, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        return json.loads(out.stdout.strip().splitlines()[-1])

    full, chunked = run(0), run(32)
    logits_mb = 300 * 151_936 * 4 / 2**20
    assert full["step_growth_mb"] > 2 * logits_mb           # the full path holds several (T, V) copies
    # chunked saves at least two (T, V) copies; what it keeps is mostly the update's fixed cost (gradients and
    # Adam state of the 151,936-row embedding), so the ratio alone drifts with T (0.36 measured at T=300)
    assert full["step_growth_mb"] - chunked["step_growth_mb"] > 2 * logits_mb
    assert chunked["step_growth_mb"] < 0.5 * full["step_growth_mb"]
    assert abs(chunked["grad_norm"] - full["grad_norm"]) < 1e-5 * max(1.0, full["grad_norm"])


@pytest.mark.gpu
def test_cuda_chunked_equals_full_and_saves_memory():
    """On a GPU: the chunked path gives the full path's values and gradients (fp32) and a lower peak
    (torch.cuda.max_memory_allocated) at Qwen's vocabulary. Written without a GPU to run it on."""
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=151_936, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=True)).cuda()
    g = torch.Generator().manual_seed(0)
    traj = Trajectory(prompt_ids=torch.randint(0, 151_936, (16,), generator=g).tolist(),
                      response_ids=torch.randint(0, 151_936, (2048,), generator=g).tolist(),
                      response_mask=[1] * 2048, group_id=0)
    batch = collate([traj], [1.0]).to("cuda")
    batch.advantages = batch.policy_mask.float()
    peaks, results = {}, {}
    for chunk in (0, 256):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        results[chunk] = _loss_and_grads(model, batch, chunk)
        torch.cuda.synchronize()
        peaks[chunk] = torch.cuda.max_memory_allocated() - base
    torch.testing.assert_close(results[256][0], results[0][0], atol=1e-5, rtol=0)
    for n, gr in results[0][2].items():
        torch.testing.assert_close(results[256][2][n], gr, atol=1e-5, rtol=1e-3, msg=n)
    assert peaks[256] < 0.3 * peaks[0], peaks
