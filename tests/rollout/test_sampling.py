"""Sampler and stop-string checker: hand-computed cases."""
import math

import torch

from searchr1.rollout.backends.sampling import filter_logits, inverse_cdf_sample, sample_tokens
from searchr1.models.stopping import StopChecker


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_k=2))[0].tolist()
    assert kept == [True, True, False, False]
    # nucleus 0.7: 0.5 alone is < 0.7, so 0.3 joins; 0.15 starts after mass 0.8 >= 0.7
    assert torch.isfinite(filter_logits(logits, top_p=0.7))[0].tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.4))[0].tolist() == [True, False, False, False]
    assert torch.isfinite(filter_logits(logits)).all()


def test_inverse_cdf_matches_the_distribution_and_skips_zeros():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([[0.2, 0.0, 0.5, 0.3, 0.0]]).repeat(40000, 1)
    freq = torch.bincount(inverse_cdf_sample(w, g), minlength=5).float() / 40000
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, w[0], atol=0.01)


def test_logprobs_are_tempered_before_filtering():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    g = torch.Generator().manual_seed(1)
    tok, lp = sample_tokens(logits, temperature=0.5, top_k=1, generator=g)
    assert tok.item() == 0  # top_k=1 forces the argmax
    assert math.isclose(lp.item(), torch.log_softmax(logits / 0.5, -1)[0, 0].item(), abs_tol=1e-5)
    tok, lp = sample_tokens(logits, do_sample=False)
    assert tok.item() == 0 and math.isclose(lp.item(), torch.log_softmax(logits, -1)[0, 0].item(), abs_tol=1e-5)


def test_stop_checker_fires_on_the_completing_token(tok):
    ids = tok.encode("<think> hm </think><search> q </search>\n\nmore text")
    check = StopChecker(tok, ("</search>", "</answer>"))
    fired = [k for k in range(1, len(ids) + 1) if check(ids[:k])]
    first = fired[0]
    assert "</search>" in tok.decode(ids[:first]) and "</search>" not in tok.decode(ids[: first - 1])
    assert check(ids[:first]) == "</search>"


def test_stop_checker_prefilter_agrees_with_decoding_every_step(tok):
    """Skipping the decode after tokens without a final '>' never misses a stop string (unicode too)."""
    text = "é</search>ü <answer>日本</answer> x</sea rch></answer>" * 3
    ids = tok.encode(text)
    g = torch.Generator().manual_seed(0)
    noisy = ids + torch.randint(0, len(tok), (200,), generator=g).tolist() + ids
    fast = StopChecker(tok, ("</search>", "</answer>"))
    slow = StopChecker(tok, ("</search>", "</answer>"))
    slow.finals = None                                       # decode after every token
    assert fast.finals == {">"}


    def turns(check):   # feed tokens one by one; a hit ends the turn and the next token starts a new one
        events, start = [], 0
        for k in range(1, len(noisy) + 1):
            hit = check(noisy[start:k])
            if hit is not None:
                events.append((k, hit))
                start = k
        return events

    events = turns(fast)
    assert events == turns(slow) and len(events) >= 12
