"""VLLMBackend on a GPU: the same engine behaviour as HFBackend (skipped without CUDA or vLLM)."""
import copy

import pytest

from searchr1.rollout import RolloutConfig, RolloutEngine
from searchr1.rollout.backends.base import TurnParams

from .conftest import FakeRetriever

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def vllm_setup(tmp_path_factory, tok, tiny_qwen):
    pytest.importorskip("vllm")
    from searchr1.rollout.backends.vllm import VLLMBackend

    path = tmp_path_factory.mktemp("tiny-qwen")
    tiny_qwen.save_pretrained(path)
    tok.save_pretrained(path)
    return VLLMBackend(str(path), gpu_memory_utilization=0.2, enforce_eager=True, max_model_len=2048)


def test_vllm_greedy_matches_hf(vllm_setup, tok, tiny_qwen):
    from searchr1.rollout.backends.hf import HFBackend

    prompts = [tok.encode("Question: who wrote Hamlet?\n"), tok.encode("Hi\n")]
    params = TurnParams(do_sample=False)
    v = vllm_setup.open(prompts).generate([0, 1], [[], []], [8, 8], params)
    h = HFBackend(copy.deepcopy(tiny_qwen).cuda(), tok).open(prompts).generate([0, 1], [[], []], [8, 8], params)
    assert [g.token_ids for g in v] == [g.token_ids for g in h]
    for gv, gh in zip(v, h):
        assert gv.logprobs == pytest.approx(gh.logprobs, abs=1e-2)


def test_vllm_engine_multi_turn(vllm_setup, tok):
    cfg = RolloutConfig(max_turns=3, max_turn_tokens=6, do_sample=True, seed=0)
    trajs = RolloutEngine(vllm_setup, FakeRetriever(), tok, cfg).run(["Question: who wrote Hamlet?\n"] * 4)
    for t in trajs:
        assert t.turns == 3 and len(t.response_ids) == len(t.response_mask) == len(t.response_logprobs)
        assert sum(t.response_mask) <= 18
