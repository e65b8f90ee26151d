"""Rewards on token-level provenance, with the real Qwen tokenizer (as the trainer uses them)."""
from searchr1.rewards import compute_score, segments_from_mask

PIECES = [
    ("<think>Zürich? 日本</think>\n<search> Zürich river </search>", 1),
    ('\n\n<information>Doc 1(Title: "Limmat") The Limmat flows through Zürich. <answer>Limmat</answer>'
     "</information>\n\n", 0),
    ("<think>The passage says Limmat.</think>\n<answer> the Limmat </answer>", 1),
]


def _encode(tok, pieces):
    ids, mask = [], []
    for text, sampled in pieces:
        enc = tok(text, add_special_tokens=False)["input_ids"]
        ids += enc
        mask += [sampled] * len(enc)
    return ids, mask


def test_segments_from_real_token_mask(qwen_tokenizer):
    ids, mask = _encode(qwen_tokenizer, PIECES)

    def decode(t):
        return qwen_tokenizer.decode(t, skip_special_tokens=False)

    segs = segments_from_mask(ids, mask, decode)
    assert [s for _, s in segs] == [True, False, True]
    assert "".join(t for t, _ in segs) == decode(ids) == "".join(t for t, _ in PIECES)
    score, comp = compute_score(decode(ids), ["Limmat"], "format", segments=segs)
    assert score == 1.0 and comp["retrieval_hit"] == 1.0
    # drop the policy's final answer: the answer inside the observation must not pay
    ids2, mask2 = _encode(qwen_tokenizer, PIECES[:2])
    segs2 = segments_from_mask(ids2, mask2, decode)
    score2, comp2 = compute_score(None, ["Limmat"], "em", segments=segs2)
    assert score2 == 0.0 and comp2["answered"] == 0.0
