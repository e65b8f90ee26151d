"""HFBackend with tiny random models built here: cache reuse vs full re-encoding, token-in/token-out,
sampling log-probs, stop strings, determinism, batch sizes."""
import pytest
import torch

from searchr1.rollout import RolloutConfig, RolloutEngine
from searchr1.rollout.backends.base import TurnParams
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.toy import BigramProtocolLM

from .conftest import FakeRetriever

PROMPTS = ["Question: who wrote Hamlet?\n", "Q: capital of France? Think first.\n", "Hi\n"]


def teacher_forced(model, traj, temperature=1.0):
    """Log-probs (R,) of the response under one full-context forward pass (no cache, no padding)."""
    ids = torch.tensor([traj.prompt_ids + traj.response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float() / temperature
    P = len(traj.prompt_ids)
    logp = torch.log_softmax(logits[P - 1 : -1], dim=-1)  # predicts response positions
    return logp, logp.gather(-1, torch.tensor(traj.response_ids)[:, None])[:, 0]


def rollout(model, tok, prompts=PROMPTS, retriever=None, **cfg):
    cfg = {"max_turns": 3, "max_turn_tokens": 6, "do_sample": False, "seed": 0, **cfg}
    engine = RolloutEngine(HFBackend(model, tok), retriever or FakeRetriever(), tok, RolloutConfig(**cfg))
    return engine.run(prompts)


def assert_matches_full_context(model, trajs, temperature=1.0, greedy=True):
    for t in trajs:
        logp, chosen = teacher_forced(model, t, temperature)
        mask = torch.tensor(t.response_mask, dtype=torch.bool)
        assert mask.any() and (~mask).any()  # sampled and injected tokens both present
        if greedy:  # every sampled token is the argmax of the full-context logits
            assert torch.equal(logp.argmax(-1)[mask], torch.tensor(t.response_ids)[mask])
        recorded = torch.tensor(t.response_logprobs)
        torch.testing.assert_close(recorded[mask], chosen[mask], atol=2e-4, rtol=0)
        assert (recorded[~mask] == 0).all()


@pytest.mark.parametrize("model_name", ["tiny_qwen", "tiny_llama"])
def test_cache_reuse_equals_full_reencoding(model_name, tok, request):
    model = request.getfixturevalue(model_name)
    trajs = rollout(model, tok)
    assert [t.turns for t in trajs] == [3, 3, 3]  # random models never act: corrective text each turn
    assert_matches_full_context(model, trajs)


@pytest.fixture(scope="module")
def copy_model(tok):
    """The demo's copy-capable model (an extra cache layer holding token ids)."""
    from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM

    torch.manual_seed(0)
    return CopyQwen2ForCausalLM(CopyQwen2Config(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, copy_dim=16, tie_word_embeddings=True)).eval()


def test_sampling_logprobs_are_tempered_full_context_logprobs(tok, tiny_qwen):
    trajs = rollout(tiny_qwen, tok, do_sample=True, temperature=0.7, top_k=50, seed=3)
    assert_matches_full_context(tiny_qwen, trajs, temperature=0.7, greedy=False)


def test_seeded_sampling_is_deterministic(tok, tiny_qwen):
    a = rollout(tiny_qwen, tok, do_sample=True, seed=11)
    b = rollout(tiny_qwen, tok, do_sample=True, seed=11)
    c = rollout(tiny_qwen, tok, do_sample=True, seed=12)
    assert [t.response_ids for t in a] == [t.response_ids for t in b]
    assert [t.response_ids for t in a] != [t.response_ids for t in c]


CHAIN = "<think> look it up </think><search> Hamlet author </search>"


@pytest.fixture(scope="module")
def chain_model(tok, tiny_qwen):
    # greedy decoding follows the chain and then loops "Hamlet author </search>" forever
    return BigramProtocolLM(tiny_qwen, tok, ["?\n" + CHAIN])


def test_no_token_past_the_stop_string(tok, chain_model):
    backend = HFBackend(chain_model, tok)
    prompt = tok.encode("Question: who wrote Hamlet?\n")
    free = backend.open([prompt]).generate([0], [[]], [30], TurnParams(do_sample=False))[0]
    assert tok.decode(free.token_ids).count("</search>") >= 2  # the model would go on
    (gen,) = backend.open([prompt]).generate([0], [[]], [30], TurnParams(stop=("</search>",), do_sample=False))
    assert (gen.finish, gen.stop) == ("stop", "</search>")
    assert tok.decode(gen.token_ids) == CHAIN
    assert gen.token_ids == free.token_ids[: len(gen.token_ids)]


def test_engine_with_searching_model(tok, chain_model):
    retriever = FakeRetriever()
    trajs = rollout(chain_model, tok, prompts=["Question: who wrote Hamlet?\n", "Other question?\n"],
                    retriever=retriever, max_turn_tokens=20)
    assert retriever.calls[0] == ["Hamlet author", "Hamlet author"]
    for t in trajs:
        assert t.queries[0] == "Hamlet author" and t.response_text.startswith(CHAIN + "\n\n<information>Doc 1")
    assert_matches_full_context(chain_model, trajs)


def test_batch_sizes_1_and_64(tok, tiny_qwen):
    (one,) = rollout(tiny_qwen, tok, prompts=PROMPTS[:1], max_turns=2, max_turn_tokens=3)
    many = rollout(tiny_qwen, tok, prompts=[f"Question number {i}?\n" * (1 + i % 5) for i in range(64)],
                   max_turns=2, max_turn_tokens=3)
    assert len(many) == 64 and all(t.turns == 2 and sum(t.response_mask) == 6 for t in many)
    # a row gives the same greedy tokens alone and inside a padded batch of 64
    (alone,) = rollout(tiny_qwen, tok, prompts=["Question number 7?\n" * 3], max_turns=2, max_turn_tokens=3)
    assert alone.response_ids == many[7].response_ids
    assert sum(one.response_mask) == 6


@pytest.mark.parametrize("model_name", ["copy_model", "chain_model"])
def test_rows_stopping_mid_turn_are_parked_without_changing_results(model_name, tok, request):
    """Rows end a turn at different steps (budgets 1..9); parked or kept in the batch, every row's
    tokens and log-probs equal a full-context re-encoding of that row alone."""
    model = request.getfixturevalue(model_name)
    prompts = [tok.encode(f"Question {i}: who wrote Hamlet?\n" * (1 + i % 3)) for i in range(6)]
    results = {}
    for park in (True, False):
        session = HFBackend(model, tok, park=park).open(prompts)
        contexts = [list(p) for p in prompts]
        produced = [[] for _ in prompts]
        appended = [[] for _ in prompts]
        for turn in range(3):
            budgets = [1 + (i * 3 + turn * 2) % 9 for i in range(6)]
            gens = session.generate(range(6), appended, budgets, TurnParams(stop=("</search>",), do_sample=False))
            for i, g in enumerate(gens):
                assert len(g.token_ids) <= budgets[i]
                start = len(contexts[i]) + len(appended[i])
                contexts[i] += appended[i] + g.token_ids
                produced[i].append((start, g.token_ids, g.logprobs))
            appended = [tok.encode(f" obs {turn} for row {i}") for i in range(6)]
        results[park] = produced
        assert (session.parks > 0) == park
        if not park:
            continue
        for i in range(6):
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=torch.tensor([contexts[i]])).logits[0].float(), -1)
            for start, ids, lps in produced[i]:
                for j, (t, lp) in enumerate(zip(ids, lps)):
                    assert int(logp[start + j - 1].argmax()) == t
                    assert abs(float(logp[start + j - 1, t]) - lp) < 2e-4
    assert [[ids for _, ids, _ in row] for row in results[True]] == [[ids for _, ids, _ in row] for row in results[False]]


def test_session_restores_train_mode(tok, tiny_qwen):
    tiny_qwen.train()
    try:
        (t,) = rollout(tiny_qwen, tok, prompts=PROMPTS[:1], max_turns=1, max_turn_tokens=2)
        assert tiny_qwen.training and len(t.response_ids) == 2
    finally:
        tiny_qwen.eval()
