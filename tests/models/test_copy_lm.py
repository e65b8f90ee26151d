"""The copy model: a proper distribution, cache == no cache (gaps included), Auto loading, copying works."""
import pytest
import torch

from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM, register_copy_lm


def _model(seed=0, vocab=61, lags=0):
    torch.manual_seed(seed)
    cfg = CopyQwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, copy_dim=16, max_position_embeddings=128,
                          tie_word_embeddings=True, copy_match_lags=lags)
    return CopyQwen2ForCausalLM(cfg).eval()


@pytest.mark.parametrize("lags", [0, 3])
def test_logits_are_log_of_a_distribution(lags):
    m = _model(lags=lags)
    logits = m(torch.randint(0, 61, (2, 9)), use_cache=False).logits
    assert torch.allclose(torch.logsumexp(logits, -1), torch.zeros(2, 9), atol=1e-5)


@pytest.mark.parametrize("lags", [0, 3])
def test_incremental_cache_with_padding_gaps_matches_full_forward(lags):
    m = _model(lags=lags)
    seq = torch.randint(1, 8, (1, 10))  # few distinct ids: the match features fire
    full = m(seq, use_cache=False).logits
    o = m(seq[:, :6], attention_mask=torch.ones(1, 6, dtype=torch.long), position_ids=torch.arange(6)[None],
          use_cache=True)
    mask = torch.tensor([[1] * 6 + [0, 0]])
    o = m(torch.zeros(1, 2, dtype=torch.long), attention_mask=mask, position_ids=torch.tensor([[6, 6]]),
          cache=o.cache, use_cache=True)
    o = m(seq[:, 6:], attention_mask=torch.cat([mask, torch.ones(1, 4, dtype=torch.long)], 1),
          position_ids=torch.arange(6, 10)[None], cache=o.cache, use_cache=True)
    assert torch.allclose(o.logits, full[:, 6:], atol=1e-5)
    last = m(seq[:, 9:], past_key_values=m(seq[:, :9], use_cache=True).cache, use_cache=True, logits_to_keep=1)
    assert torch.allclose(last.logits[:, -1], full[:, -1], atol=1e-5)


@pytest.mark.parametrize("lags", [0, 3])
def test_generate_and_auto_class_round_trip(tmp_path, lags):
    from transformers import AutoModelForCausalLM

    m = _model(lags=lags)
    x = torch.randint(0, 61, (2, 5))
    out = m.generate(x, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape == (2, 9)
    m.save_pretrained(tmp_path)
    register_copy_lm()
    register_copy_lm()  # idempotent
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is CopyQwen2ForCausalLM
    assert torch.equal(loaded(x, use_cache=False).logits, m(x, use_cache=False).logits)


def test_learns_to_copy_unseen_tokens_quickly():
    """Task: 'a b c SEP a b c' with fresh random tokens each batch; only copying can solve it."""
    m = _model(1, vocab=61).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)

    def batch():
        src = torch.randint(2, 61, (32, 5), generator=gen)
        return torch.cat([src, torch.ones(32, 1, dtype=torch.long), src], 1)

    for _ in range(150):
        x = batch()
        labels = x.clone()
        labels[:, :6] = -100
        loss = m(x, labels=labels, use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    x = batch()
    with torch.no_grad():
        pred = m(x, use_cache=False).logits[:, 5:10].argmax(-1)
    assert (pred == x[:, 6:11]).float().mean() > 0.5  # chance: 1/59


def test_match_features_copy_exactly_where_one_token_keys_are_ambiguous():
    """'a b a c' repeats 'a': a one-token key cannot tell which 'a' to continue from. The
    lag features (fixed, no training) pick the continuation whose earlier tokens match."""
    m = _model(lags=3)
    with torch.no_grad():
        m.copy_match.copy_(torch.tensor([4.0, 4.0, 4.0]))
        m.copy_q.weight.zero_()
        m.copy_gate.bias.fill_(-20.0)  # copy only
        m.copy_gate.weight.zero_()
    x = torch.tensor([[5, 6, 5, 7, 9, 1, 5, 6, 5]])  # ... SEP a b a -> next must be c (7), not b (6)
    assert m(x, use_cache=False).logits[0, -1].argmax().item() == 7
    x = torch.tensor([[9, 5, 6, 8, 5, 7, 1, 9, 5]])  # '9 5' was followed by 6, '8 5' by 7
    assert m(x, use_cache=False).logits[0, -1].argmax().item() == 6
    x = torch.tensor([[9, 5, 6, 8, 5, 7, 1, 8, 5]])
    assert m(x, use_cache=False).logits[0, -1].argmax().item() == 7


def test_bad_copy_match_lags_rejected():
    with pytest.raises(ValueError, match="copy_match_lags"):
        CopyQwen2Config(copy_match_lags=-1)
