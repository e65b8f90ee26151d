"""The trainer's side of a separate rollout engine (rollout.backend=vllm), without vLLM: a backend that holds
its own copy of the weights gets the policy's (LoRA merged) before every rollout that follows an update,
``time/weight_sync`` and ``rollout/logprob_abs_diff_*`` are logged, and the config / CLI reject what
cannot run. The real engine is exercised by tests/rl/test_vllm_engine.py (``make test-vllm``)."""
import copy

import pytest
import torch

from searchr1.errors import ConfigError, UsageError
from searchr1.eval.setup import check_backend
from searchr1.rl.config import load_config
from searchr1.rl.engines import logprob_abs_diff
from searchr1.rl.trainer import Trainer
from searchr1.rollout.backends.base import TurnParams
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.backends.vllm import merged_weights, vllm_available


class CopyEngine:
    """A backend with its own copy of the weights, like vLLM: rollouts run on the copy, ``sync_weights``
    loads :func:`merged_weights` of the trainer's model into it by name."""

    def __init__(self, model, tokenizer):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.copy = copy.deepcopy(base)
        if hasattr(model, "get_base_model"):   # a peft model: the engine holds a plain (merged) model
            self.copy = copy.deepcopy(model).merge_and_unload()
        self.hf = HFBackend(self.copy, tokenizer)
        self.syncs, self.wakes = 0, 0

    def open(self, prompts, seed=None):
        return self.hf.open(prompts, seed)

    def sync_weights(self, model) -> float:
        result = self.copy.load_state_dict(dict(merged_weights(model)), strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
        tied = {"lm_head.weight"} if self.copy.config.tie_word_embeddings else set()
        assert set(result.missing_keys) <= tied, result.missing_keys
        self.syncs += 1
        return 0.001

    def wake_up(self) -> None:
        self.wakes += 1


def _trainer(tiny, questions, tmp_path, tiny_config, **extra):
    model, tok = tiny
    cfg = tiny_config(tmp_path, **extra)
    holder = {}

    def make_backend(policy, tokenizer):
        if "engine" not in holder:
            holder["engine"] = CopyEngine(policy, tokenizer)
        return holder["engine"]

    tr = Trainer(cfg, policy=model, tokenizer=tok, train_examples=questions, make_backend=make_backend,
                 reward_fn=lambda trajs, exs: ([float(i % 2) for i in range(len(trajs))], {}))
    return tr, holder


def _assert_engine_holds_policy(engine: CopyEngine, policy) -> None:
    expected = copy.deepcopy(policy)
    expected = expected.merge_and_unload() if hasattr(expected, "merge_and_unload") else expected
    want = expected.state_dict()
    for name, tensor in engine.copy.state_dict().items():
        assert torch.allclose(tensor, want[name], atol=1e-6, rtol=0), name


@pytest.mark.parametrize("lora", [0, 4])
def test_engine_gets_the_policy_weights_once_per_update(tiny, questions, tmp_path, tiny_config, lora):
    tr, holder = _trainer(tiny, questions, tmp_path, tiny_config, model__lora_rank=lora, total_steps=2)
    first = tr.train_step()
    engine = holder["engine"]
    assert engine.syncs == 1 and "time/weight_sync" in first          # the initial push (cold start / resume)
    assert first["rollout/logprob_abs_diff_max"] < 1e-4               # the copy equals the policy
    trainable = {k: v.detach().clone() for k, v in tr.policy.named_parameters() if v.requires_grad}
    second = tr.train_step()
    assert engine.syncs == 2 and second["time/weight_sync"] > 0
    assert second["rollout/logprob_abs_diff_max"] < 1e-4              # pushed after step 1's update
    assert 0 <= second["rollout/logprob_abs_diff_mean"] <= second["rollout/logprob_abs_diff_max"]
    moved = [k for k, v in tr.policy.named_parameters() if v.requires_grad and not torch.equal(v, trainable[k])]
    assert moved, "the second step changed no weight"
    trainable = {k: v.detach().clone() for k, v in tr.policy.named_parameters() if v.requires_grad}
    tr.rollout(tr.train_examples[:2], [0, 1], seed=0, greedy=True)
    assert engine.syncs == 3                                           # step 2's update pushed before the rollout
    _assert_engine_holds_policy(engine, tr.policy)
    assert all(torch.equal(v, trainable[k]) for k, v in tr.policy.named_parameters() if v.requires_grad), \
        "the push changed the trainable weights"
    tr.rollout(tr.train_examples[:2], [0, 1], seed=0, greedy=True)
    assert engine.syncs == 3 and engine.wakes == 1                     # no update since: no push


def test_merged_lora_weights_give_the_peft_models_outputs(tiny):
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)   # B starts at 0 (no change); make the adapter matter
    names = [n for n, _ in merged_weights(peft_model)]
    assert not [n for n in names if "lora_" in n or "base_layer" in n]
    engine = CopyEngine(peft_model, tok)
    engine.copy.load_state_dict({k: torch.zeros_like(v) for k, v in engine.copy.state_dict().items()})
    engine.sync_weights(peft_model)
    ids = [tok.encode("what is 3")]
    params = TurnParams(do_sample=False)
    got = engine.open(ids).generate([0], [[]], [12], params)[0]
    want = HFBackend(peft_model.get_base_model(), tok).open(ids).generate([0], [[]], [12], params)[0]
    assert got.token_ids == want.token_ids
    assert max(abs(a - b) for a, b in zip(got.logprobs, want.logprobs)) < 1e-5


def test_logprob_abs_diff_counts_policy_tokens_only():
    engine = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 0.0, 0.0]])
    trainer = torch.tensor([[-1.5, -9.0, -3.25], [-0.25, -7.0, 0.0]])
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]])
    mean, peak = logprob_abs_diff(engine, trainer, mask)
    assert mean == pytest.approx((0.5 + 0.25 + 0.25) / 3) and peak == pytest.approx(0.5)
    assert logprob_abs_diff(engine, trainer, torch.zeros_like(mask)) == (0.0, 0.0)


def test_rollout_backend_config_is_checked():
    cfg = load_config(None, ["rollout.backend=vllm", "rollout.vllm.max_model_len=8192", "model.dtype=bfloat16"])
    assert cfg.rollout.backend == "vllm" and cfg.vllm_dtype == "bfloat16"
    assert load_config(None, ["rollout.vllm.dtype=float32", "model.dtype=bfloat16"]).vllm_dtype == "float32"
    bad = {"rollout.backend=sglang": "use one of hf, vllm",
           "rollout.vllm.gpu_memory_utilization=1.5": "gpu_memory_utilization",
           "rollout.vllm.dtype=int8": "rollout.vllm.dtype",
           "rollout.vllm.kv_cache_gib=0": "kv_cache_gib"}
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])
    with pytest.raises(ConfigError, match="max_model_len=1024 is shorter than rollout.max_total_tokens=4096"):
        load_config(None, ["rollout.backend=vllm", "rollout.vllm.max_model_len=1024"])
    load_config(None, ["rollout.vllm.max_model_len=1024"])   # not used by the hf backend: no error


@pytest.mark.skipif(vllm_available(), reason="vLLM is installed here")
def test_missing_vllm_is_named_before_anything_loads(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"id": "1", "question": "q", "golden_answers": ["a"]}\n')
    cfg = load_config(None, ["rollout.backend=vllm", f"data.train_file={data}", "rollout.search_enabled=false"])
    with pytest.raises(ConfigError, match="make install-vllm"):
        cfg.check_inputs()
    with pytest.raises(UsageError, match="make install-vllm"):
        check_backend("vllm", ("search-r1",))


def test_eval_backend_flag_rejects_what_vllm_cannot_run():
    check_backend("hf", ("direct", "search-r1"))
    with pytest.raises(UsageError, match=r"the others \(direct, rag\) call the generator"):
        check_backend("vllm", ("direct", "search-r1", "rag"))
    with pytest.raises(UsageError, match="not an OpenAI-compatible endpoint"):
        check_backend("vllm", ("search-r1",), api=True)
