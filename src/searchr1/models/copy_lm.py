"""A tiny Qwen2 causal LM with a copy (pointer-generator) head, loadable through ``AutoModelForCausalLM``.

Why: a ~1M-parameter transformer pretrained for a few hundred CPU steps learns the
Search-R1 format but not to copy names out of its context, so its queries and
answers almost never contain the right entity and RL sees no reward. A pointer
head gives copying from the start (See et al., 2017, "Get To The Point"):

    p(next = w) = g_t * softmax(W h_t)[w] + (1 - g_t) * sum_{s <= t, x_s = w} a_{t,s}

where ``h`` is the last hidden state (B, T, H), ``g_t = sigmoid(w_g . h_t)`` and
``a_{t,s} = softmax_s(q_t . k_s / sqrt(d))`` with ``q_t = W_q [h_t ; E(x_t)]`` and
``k_s = W_k [h_s ; E(x_{s-1})]`` (E = the token embedding). Feeding the current token's
embedding into the query and the previous token's into the key makes the "copy what
followed this token last time" (induction) pattern one bilinear form away, which a
tiny model would otherwise need many steps to discover.

With ``copy_match_lags = L > 0`` the score also gets exact-match induction features,

    score(t, s) += sum_{j < L} beta_j * 1[x_{t-j} == x_{s-1-j}]

(lags count real tokens, padding skipped; ``beta`` learned, one scalar per lag): "continue
copying where the last L tokens match the context". Names split into several sub-word
tokens share their first pieces with other names (" B", "us", ...), so a one-token key
matches many places (docs/demo.md measures both forms).

Interface: exactly ``Qwen2ForCausalLM``'s (``input_ids, attention_mask, position_ids,
cache`` (alias ``past_key_values``), ``use_cache, labels, logits_to_keep``) returning
``CausalLMOutputWithPast``. ``logits`` are the *log* of the mixture, so
``softmax(logits)`` is the mixture and ``log_softmax(logits) == logits``; every
sampler, log-prob and loss written for ordinary LMs works unchanged. With a KV
cache the copy keys and token ids of earlier positions live in one extra
``DynamicLayer`` appended after the decoder's layers (keys ``(B, 1, S, d)``, values =
token ids as float ``(B, 1, S, 1)``), so crop / reorder / batch-select of the cache
keep them aligned.

Call ``register_copy_lm()`` once before ``AutoModelForCausalLM.from_pretrained`` on
a saved copy model (registration is explicit: importing this module changes nothing).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

MODEL_TYPE = "searchr1-copy-qwen2"
_LOG_FLOOR = 1e-20  # keeps log(p_copy) finite where no context token matches


class CopyQwen2Config(Qwen2Config):
    model_type = MODEL_TYPE

    def __init__(self, copy_dim: int = 64, copy_match_lags: int = 0, **kwargs):
        """copy_dim: width of the pointer head's query/key space; copy_match_lags: exact-match
        induction features (0 = none, see the module docstring)."""
        if copy_dim < 1:
            raise ValueError(f"copy_dim must be >= 1 (got {copy_dim}); 32-64 suits models of hidden size 64-256")
        if not 0 <= copy_match_lags <= 8:
            raise ValueError(f"copy_match_lags must be in [0, 8] (got {copy_match_lags}); 3 suits sub-word names")
        self.copy_dim = copy_dim
        self.copy_match_lags = copy_match_lags
        super().__init__(**kwargs)


class CopyQwen2ForCausalLM(Qwen2ForCausalLM):
    config_class = CopyQwen2Config

    def __init__(self, config: CopyQwen2Config):
        super().__init__(config)
        h, d = config.hidden_size, config.copy_dim
        self.copy_q = nn.Linear(2 * h, d, bias=False)
        self.copy_k = nn.Linear(2 * h, d, bias=False)
        self.copy_gate = nn.Linear(h, 1)
        lags = getattr(config, "copy_match_lags", 0)
        self.copy_match = nn.Parameter(torch.ones(lags)) if lags else None
        self.post_init()

    def _copy_layer(self, cache) -> DynamicLayer | None:
        """The cache layer that stores copy keys/ids, appended after the decoder layers."""
        if cache is None:
            return None
        n = self.config.num_hidden_layers
        if len(cache.layers) == n:
            cache.layers.append(DynamicLayer())
        elif len(cache.layers) != n + 1:
            raise ValueError(f"cache has {len(cache.layers)} layers; a copy model with {n} decoder layers "
                             f"expects {n} (fresh) or {n + 1} (in use). Pass a cache made for this model.")
        return cache.layers[n]

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, inputs_embeds=None,
                labels=None, use_cache=None, logits_to_keep=0, past_key_values=None, **kwargs):
        if input_ids is None:
            raise ValueError("the copy model needs input_ids (it copies tokens); inputs_embeds alone is not enough")
        if cache is None and past_key_values is not None:
            cache = past_key_values
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         cache=cache if use_cache else None, use_cache=use_cache, **kwargs)
        h = out.last_hidden_state  # (B, T, H)
        B, T = input_ids.shape
        layer = self._copy_layer(cache) if use_cache else None
        past_ids = None
        if layer is not None and layer.is_initialized and layer.values is not None and layer.values.shape[-2] > 0:
            past_ids = layer.values[:, 0, :, 0].round().long()  # (B, S_past)
        prev = _previous_tokens(input_ids, past_ids, attention_mask)  # (B, T)
        keys_new = self.copy_k(torch.cat([h, self.model.embed_tokens(prev)], dim=-1))  # (B, T, d)
        if layer is not None:
            keys, ids_f = layer.update(keys_new.unsqueeze(1), input_ids.to(torch.float32)[:, None, :, None])
            keys, ids = keys[:, 0], ids_f[:, 0, :, 0].round().long()  # (B, S, d), (B, S)
        else:
            keys, ids = keys_new, input_ids
        S = keys.shape[1]
        q_idx = torch.arange(T, device=h.device)  # which new positions get logits
        if isinstance(logits_to_keep, int):
            q_idx = q_idx[-logits_to_keep:] if logits_to_keep else q_idx
        else:
            q_idx = q_idx[logits_to_keep]
        hq = h[:, q_idx]  # (B, Tq, H)
        q_pos = q_idx + (S - T)  # absolute positions of the queries among the S keys
        queries = self.copy_q(torch.cat([hq, self.model.embed_tokens(input_ids[:, q_idx])], dim=-1))  # (B, Tq, d)
        scores = torch.einsum("btd,bsd->bts", queries, keys) / math.sqrt(self.config.copy_dim)
        if self.copy_match is not None:
            scores = scores + _match_scores(ids, attention_mask, q_pos, self.copy_match).to(scores.dtype)
        allowed = torch.arange(S, device=h.device)[None, :] <= q_pos[:, None]  # (Tq, S) causal
        allowed = allowed[None].expand(B, -1, -1)
        if attention_mask is not None and attention_mask.dim() == 2:
            allowed = allowed & attention_mask[:, None, -S:].bool()
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        attn = torch.softmax(scores.float(), dim=-1)  # (B, Tq, S)
        p_copy = torch.zeros(B, hq.shape[1], self.config.vocab_size, dtype=attn.dtype, device=h.device)
        p_copy.scatter_add_(2, ids[:, None, :].expand(-1, hq.shape[1], -1), attn)
        gate = self.copy_gate(hq).float()  # (B, Tq, 1)
        logits = torch.logaddexp(
            nn.functional.logsigmoid(gate) + torch.log_softmax(self.lm_head(hq).float(), dim=-1),
            nn.functional.logsigmoid(-gate) + torch.log(p_copy.clamp_min(_LOG_FLOOR)),
        )  # (B, Tq, V) log of the mixture
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, cache=out.cache if use_cache else None)


def _previous_tokens(input_ids, past_ids, attention_mask):
    """The last *real* token before each new position (B, T), skipping padding columns.

    Batched generation interleaves padding (mask 0) into the cache; keys must still see
    the true previous token so cached and uncached passes agree. A position with no
    earlier real token gets its own id.
    """
    all_ids = input_ids if past_ids is None else torch.cat([past_ids, input_ids], dim=1)  # (B, S)
    T = input_ids.shape[1]
    own, before = _lag_positions(_real_tokens(all_ids, attention_mask), 1)[:, :, -T:]  # (B, T) each
    return all_ids.gather(1, torch.where(before >= 0, before, own))


def _real_tokens(ids: torch.Tensor, attention_mask) -> torch.Tensor:
    """(B, S) bool: which of the S cached + new positions hold real tokens (not padding)."""
    if attention_mask is None or attention_mask.dim() != 2:
        return torch.ones_like(ids, dtype=torch.bool)
    return attention_mask[:, -ids.shape[1]:].bool()


def _lag_positions(real: torch.Tensor, lags: int) -> torch.Tensor:
    """(B, S) bool of real tokens -> (lags + 1, B, S) index of the j-th previous real token
    of each position (j = 0 is the position itself), -1 where there is none."""
    B, S = real.shape
    idx = torch.arange(S, device=real.device).expand(B, S)
    last_real = torch.where(real, idx, torch.full_like(idx, -1)).cummax(dim=1).values  # at or before s
    before = torch.cat([torch.full_like(last_real[:, :1], -1), last_real[:, :-1]], dim=1)  # strictly before s
    out = [idx]
    for _ in range(lags):
        p = out[-1]
        out.append(torch.where(p >= 0, before.gather(1, p.clamp_min(0)), p))
    return torch.stack(out)


def _match_scores(ids: torch.Tensor, attention_mask, q_pos: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """sum_j beta_j * 1[x_{t-j} == x_{s-1-j}] for queries at absolute positions ``q_pos`` (Tq,)
    against all S keys. ids: (B, S) token ids of every cached + new position. -> (B, Tq, S)"""
    B, S = ids.shape
    L = beta.shape[0]
    pos = _lag_positions(_real_tokens(ids, attention_mask), L)  # (L + 1, B, S)
    lag_ids = [torch.where(p >= 0, ids.gather(1, p.clamp_min(0)), p) for p in pos]  # L + 1 x (B, S)
    out = torch.zeros(B, q_pos.shape[0], S, dtype=beta.dtype, device=ids.device)
    for j in range(L):
        q = lag_ids[j][:, q_pos]  # (B, Tq): x_{t-j}
        k = lag_ids[j + 1]  # (B, S): x_{s-1-j}
        out = out + beta[j] * ((q[:, :, None] == k[:, None, :]) & (k >= 0)[:, None, :] & (q >= 0)[:, :, None])
    return out


def register_copy_lm() -> None:
    """Make ``AutoConfig`` / ``AutoModelForCausalLM`` load saved copy models (idempotent)."""
    AutoConfig.register(MODEL_TYPE, CopyQwen2Config, exist_ok=True)
    AutoModelForCausalLM.register(CopyQwen2Config, CopyQwen2ForCausalLM, exist_ok=True)
