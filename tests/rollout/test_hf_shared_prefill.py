"""HFBackend's one prefill per distinct prompt (GRPO groups) keeps the sampled tokens and log-probs."""
import pytest
import torch

from searchr1.rollout.backends.base import TurnParams
from searchr1.rollout.backends.hf import HFBackend


def _run(model, tok, prompts, share: bool, do_sample: bool):
    backend = HFBackend(model, tok, share_prefill=share)
    session = backend.open(prompts, seed=11)
    n = len(prompts)
    out, appended = [], [[] for _ in range(n)]
    for turn in range(2):
        budgets = [2 + (i * 5 + turn) % 7 for i in range(n)]
        gens = session.generate(range(n), appended, budgets, TurnParams(do_sample=do_sample, temperature=0.9))
        out.append([(g.token_ids, g.logprobs) for g in gens])
        appended = [tok.encode(f" obs {turn}/{i}") for i in range(n)]
    session.close()
    return out


@pytest.mark.parametrize("model_name", ["tiny_qwen", "copy_model"])
@pytest.mark.parametrize("do_sample", [False, True])
def test_shared_prefill_gives_the_same_tokens_and_logprobs(model_name, do_sample, tok, request):
    if model_name == "copy_model":
        from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM

        torch.manual_seed(0)
        model = CopyQwen2ForCausalLM(CopyQwen2Config(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, copy_dim=16, tie_word_embeddings=True)).eval()
    else:
        model = request.getfixturevalue(model_name)
    base = [tok.encode("Q: who wrote Hamlet?\n"), tok.encode("Q: capital of France? Think.\n")]
    prompts = [base[i % 2] for i in range(6)]           # 2 groups of 3, interleaved
    shared = _run(model, tok, prompts, True, do_sample)
    plain = _run(model, tok, prompts, False, do_sample)
    for turn_s, turn_p in zip(shared, plain):
        for (ids_s, lp_s), (ids_p, lp_p) in zip(turn_s, turn_p):
            assert ids_s == ids_p
            torch.testing.assert_close(torch.tensor(lp_s), torch.tensor(lp_p), atol=1e-5, rtol=0)
    if not do_sample:   # greedy: the samples of a group agree (up to their different budgets)
        a, b = shared[0][0][0], shared[0][2][0]
        assert a[:len(b)] == b[:len(a)]

