"""A toy policy that speaks the Search-R1 protocol: a causal LM plus a bigram table counted from
example texts. For benchmarks and tests of the rollout machinery, where a random-weight model would
almost never write ``</search>``.

``logits = body(context) + bias[last token]``: for a token seen in the example texts the bias is
``log p(next | token)`` from the bigram counts and ``floor`` for every other next token, so sampling
follows the bigram chain (the body's small random logits only break ties); after a token never seen
in the texts the body alone decides. The body is any transformers causal LM and does all the real
work (attention over the whole context, the KV cache), so the cost per token is the body's.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import torch
from torch import nn


class BigramProtocolLM(nn.Module):
    def __init__(self, body: nn.Module, tokenizer, texts: Iterable[str], floor: float = -30.0):
        super().__init__()
        self.body = body
        self.config = getattr(body, "config", None)
        self.generation_config = getattr(body, "generation_config", None)
        counts: dict[int, Counter] = defaultdict(Counter)
        for text in texts:
            ids = tokenizer.encode(text, add_special_tokens=False)
            for a, b in zip(ids, ids[1:]):
                counts[a][b] += 1
        if not counts:
            raise ValueError("texts gave no token pairs; pass example protocol texts of two tokens or more.")
        vocab = body.get_input_embeddings().num_embeddings
        width = max(len(c) for c in counts.values())
        state_of = torch.full((vocab,), -1, dtype=torch.long)
        succ_ids = torch.zeros(len(counts), width, dtype=torch.long)
        succ_logp = torch.zeros(len(counts), width)
        for s, (a, c) in enumerate(sorted(counts.items())):
            state_of[a] = s
            total = sum(c.values())
            pairs = sorted(c.items())
            pairs += [pairs[0]] * (width - len(pairs))  # padding repeats a real entry (same value)
            succ_ids[s] = torch.tensor([b for b, _ in pairs])
            succ_logp[s] = torch.tensor([float(torch.log(torch.tensor(n / total))) for _, n in pairs])
        self.floor = floor
        self.register_buffer("state_of", state_of, persistent=False)
        self.register_buffer("succ_ids", succ_ids, persistent=False)
        self.register_buffer("succ_logp", succ_logp, persistent=False)

    def get_input_embeddings(self):
        return self.body.get_input_embeddings()

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None,
                logits_to_keep=0, past_key_values=None, **kwargs):
        out = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                        cache=cache if cache is not None else past_key_values, use_cache=use_cache,
                        logits_to_keep=logits_to_keep, **kwargs)
        logits = out.logits  # (B, T', V)
        state = self.state_of[input_ids[:, -logits.shape[1]:]]  # (B, T')
        known = state >= 0
        if bool(known.any()):
            s = state[known]
            bias = torch.full((s.shape[0], logits.shape[-1]), self.floor, dtype=logits.dtype, device=logits.device)
            bias.scatter_(1, self.succ_ids[s], self.succ_logp[s].to(logits.dtype))
            logits = logits.clone()
            logits[known] += bias
        out.logits = logits
        return out
