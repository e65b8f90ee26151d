"""Hugging Face transformers backend: our own batched decoding loop with a KV cache kept per session.

The cache of every row is reused across turns: a new turn feeds only the row's not-yet-seen
tokens (its last sampled token and the injected observation), never the whole context again.
Rows are left-padded inside the batch; padding (also in the middle of a row, where rows appended
observations of different lengths) is masked out, and each row carries its own position ids, so a
row's tokens see exactly the positions they would see alone. Rows whose trajectory finished are
dropped from the cache at the next turn (``compact=True``). Within a turn, once half of the batch
or more has stopped, the stopped rows are *parked* (``park=True``): their cache slices leave the
batch, so the remaining steps compute only the rows still generating; at the end of the turn they
come back with the missed columns as masked padding. Parking needs plain dynamic cache layers
(or legacy tuples); with other cache types (sliding window, ...) stopped rows stay in the batch.

``share_prefill=True`` keeps the numbers (up to float rounding of a smaller matmul) with less
work: rows opened with the same prompt (the G samples of a GRPO question) prefill it once; the
cache rows and first-token logits are then copied to every row.

The forward pass is the model's own (transformers' modules and cache classes, public APIs only).
Works with any causal LM whose ``forward(input_ids, attention_mask, position_ids, cache |
past_key_values, use_cache)`` returns logits and the cache (transformers models and custom ones).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from searchr1.models.signature import cache_kwarg, forward_params
from searchr1.rollout.backends.base import Generation, TurnParams
from searchr1.rollout.backends.sampling import sample_tokens
from searchr1.models.stopping import StopChecker


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(tokenizer, "eos_token_id", None), getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else source)
    return ids


def _plain_dynamic(cache) -> bool:
    """A DynamicCache whose layers are all plain dynamic ones (not offloaded, sliding or quantized)."""
    layers = getattr(cache, "layers", None)
    return (isinstance(cache, DynamicCache) and not getattr(cache, "offloading", False) and bool(layers)
            and all(type(la) is DynamicLayer for la in layers))


class HFBackend:
    """``HFBackend(model, tokenizer, device=None, dtype=None)``; ``open(prompts, seed)`` starts a batch."""

    def __init__(self, model, tokenizer, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 compact: bool = True, park: bool = True, share_prefill: bool = True):
        if device is not None or dtype is not None:
            model = model.to(device=device, dtype=dtype)
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.compact = compact
        self.park = park
        self.share_prefill = share_prefill
        self._stop_checkers: dict[tuple[str, ...], StopChecker] = {}
        self.eos_ids = _eos_ids(model, tokenizer)
        if not self.eos_ids:
            raise ValueError("no EOS token: set tokenizer.eos_token or model.generation_config.eos_token_id.")
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad if pad is not None else min(self.eos_ids))
        self._cache_kw = cache_kwarg(model)
        if self._cache_kw is None:
            raise TypeError(
                f"{type(model).__name__}.forward takes neither `cache` nor `past_key_values`; "
                "HFBackend needs a causal LM with a KV cache."
            )
        self._keep_last = "logits_to_keep" in forward_params(model)

    def stop_checker(self, stops: Sequence[str]) -> StopChecker:
        """One checker per stop-string set, kept across turns and sessions (it remembers token ids)."""
        key = tuple(stops)
        if key not in self._stop_checkers:
            self._stop_checkers[key] = StopChecker(self.tokenizer, key)
        return self._stop_checkers[key]

    def open(self, prompts: Sequence[Sequence[int]], seed: int | None = None) -> "HFSession":
        """Start a batch. The model is in eval mode (no dropout) until the session is closed, then
        back in the mode it was in (a trainer's policy stays in train mode between rollouts)."""
        return HFSession(self, prompts, seed)

    @torch.inference_mode()
    def forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache):
        """Next-token logits of the last column (B, V) and the grown cache. ids, pos: (B, L); mask: (B, past + L)."""
        kwargs = {self._cache_kw: cache, "use_cache": True}
        if self._keep_last:
            kwargs["logits_to_keep"] = 1
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kwargs)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = out.past_key_values
        return out.logits[:, -1, :], new_cache


def _select_cache(cache, index: torch.Tensor):
    """Keep batch rows ``index`` of a transformers Cache or a legacy tuple of (key, value) tensors."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)


class HFSession:
    def __init__(self, backend: HFBackend, prompts: Sequence[Sequence[int]], seed: int | None):
        self.b = backend
        dev = backend.device
        self.pending = [list(p) for p in prompts]   # row -> tokens not yet in the cache
        self.rows = list(range(len(prompts)))       # batch slot -> row
        self.cache = None
        self.mask = torch.zeros(len(prompts), 0, dtype=torch.long, device=dev)  # (B, T) 1 = real token
        self.pos = torch.zeros(len(prompts), dtype=torch.long, device=dev)       # (B,) tokens in cache
        self.released: set[int] = set()
        self.parked: list = []  # (cache tensors, mask, pos, rows) of rows out of the batch this turn
        self.parks = 0          # how many times rows were parked (diagnostics)
        self.was_training = backend.model.training
        backend.model.eval()
        self.generator = None
        if seed is not None:
            self.generator = torch.Generator(device=dev)
            self.generator.manual_seed(seed)

    def release(self, rows: Sequence[int]) -> None:
        self.released.update(rows)

    def close(self) -> None:
        self.cache, self.parked = None, []
        if self.was_training:
            self.b.model.train()

    def _compact(self) -> None:
        keep = [s for s, r in enumerate(self.rows) if r not in self.released]
        if len(keep) == len(self.rows):
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.b.device)
        if self.cache is not None:
            self.cache = _select_cache(self.cache, index)
        self.mask, self.pos = self.mask.index_select(0, index), self.pos.index_select(0, index)
        self.rows = [self.rows[s] for s in keep]

    def _prefill(self, slots: list[int]) -> torch.Tensor:
        """Feed each slot's pending tokens (left-padded); returns next-token logits (B, V)."""
        n, dev = len(self.rows), self.b.device
        width = max(len(self.pending[self.rows[s]]) for s in slots)
        ids = torch.full((n, width), self.b.pad_id, dtype=torch.long)
        new_mask = torch.zeros((n, width), dtype=torch.long)
        pos = self.pos.cpu()[:, None].repeat(1, width)
        for s in slots:
            toks = self.pending[self.rows[s]]
            k = len(toks)
            ids[s, width - k :] = torch.tensor(toks, dtype=torch.long)
            new_mask[s, width - k :] = 1
            pos[s, width - k :] = pos[s, 0] + torch.arange(k)
            self.pending[self.rows[s]] = []
        self.mask = torch.cat([self.mask, new_mask.to(dev)], dim=1)
        self.pos += new_mask.sum(1).to(dev)
        if self.cache is None and self.b.share_prefill:
            rows, inv = torch.unique(torch.cat([ids, new_mask], dim=1), dim=0, return_inverse=True)
            if len(rows) < n:   # identical prompts: prefill each once, then copy to its rows
                u_ids, u_mask = rows[:, :width], rows[:, width:]
                u_pos = (u_mask.cumsum(1) - 1).clamp(min=0)
                logits, cache = self.b.forward(u_ids.to(dev), u_mask.to(dev), u_pos.to(dev), None)
                inv = inv.to(dev)
                self.cache = _select_cache(cache, inv)
                return logits.index_select(0, inv)
        logits, self.cache = self.b.forward(ids.to(dev), self.mask, pos.to(dev), self.cache)
        return logits

    def generate(self, rows, appended, max_new_tokens, params: TurnParams) -> list[Generation]:
        for r, extra in zip(rows, appended):
            if r in self.released:
                raise RuntimeError(f"row {r} was released and cannot generate again")
            self.pending[r].extend(int(t) for t in extra)
            if not self.pending[r]:
                raise ValueError(f"row {r} has no new context to continue from")
        if self.b.compact:
            self._compact()
        stop = self.b.stop_checker(params.stop)
        out = {r: Generation([], [] if params.return_logprobs else None, "length") for r in rows}
        budget = dict(zip(rows, max_new_tokens))
        active = [r for r in rows if budget[r] > 0]
        if not active:
            return [out[r] for r in rows]
        slot_of = {r: s for s, r in enumerate(self.rows)}
        logits = self._prefill([slot_of[r] for r in rows])
        dev = self.b.device
        while True:
            idx = torch.tensor([slot_of[r] for r in active], dtype=torch.long, device=dev)
            tokens, lps = sample_tokens(logits.index_select(0, idx), params.temperature, params.top_p,
                                        params.top_k, params.do_sample, self.generator)
            still = []
            for r, tok, lp in zip(active, tokens.tolist(), lps.tolist()):
                g = out[r]
                g.token_ids.append(tok)
                if g.logprobs is not None:
                    g.logprobs.append(lp)
                if tok in self.b.eos_ids:
                    g.finish = "eos"
                elif (hit := stop(g.token_ids)) is not None:
                    g.finish, g.stop = "stop", hit
                elif len(g.token_ids) < budget[r]:
                    still.append(r)
                    continue
                self.pending[r] = [tok]  # not yet in the cache; fed first on the row's next turn
            if not still:
                break
            if self.b.park and 2 * len(still) <= len(self.rows) and self._parkable():
                self._park(set(still))
                slot_of = {r: s for s, r in enumerate(self.rows)}
            n = len(self.rows)
            step_ids, real = [self.b.pad_id] * n, [0] * n
            for r in still:
                step_ids[slot_of[r]] = out[r].token_ids[-1]
                real[slot_of[r]] = 1
            step = torch.tensor(step_ids, dtype=torch.long).view(n, 1)
            col = torch.tensor(real, dtype=torch.long).view(n, 1).to(dev)
            self.mask = torch.cat([self.mask, col], dim=1)
            logits, self.cache = self.b.forward(step.to(dev), self.mask, self.pos[:, None].clone(), self.cache)
            self.pos += col[:, 0]
            active = still
        self._unpark()
        return [out[r] for r in rows]

    # -- parking: rows that finished their turn leave the batch until the turn ends ---------------
    def _parkable(self) -> bool:
        """Parking slices cache tensors directly: only legacy tuples or plain dynamic layers (not offloaded,
        sliding or quantized: :func:`_plain_dynamic`) that already hold keys."""
        if isinstance(self.cache, tuple):
            return True
        return _plain_dynamic(self.cache) and all(la.keys is not None for la in self.cache.layers)

    def _layer_tensors(self) -> list[list[torch.Tensor]]:
        if isinstance(self.cache, tuple):
            return [list(layer) for layer in self.cache]
        return [[la.keys, la.values] for la in self.cache.layers]

    def _set_layer_tensors(self, tensors: list[list[torch.Tensor]]) -> None:
        if isinstance(self.cache, tuple):
            self.cache = tuple(tuple(layer) for layer in tensors)
            return
        for la, (k, v) in zip(self.cache.layers, tensors):
            la.keys, la.values = k, v

    def _park(self, keep_rows: set[int]) -> None:
        keep = [s for s, r in enumerate(self.rows) if r in keep_rows]
        park = [s for s, r in enumerate(self.rows) if r not in keep_rows]
        ik = torch.tensor(keep, dtype=torch.long, device=self.b.device)
        ip = torch.tensor(park, dtype=torch.long, device=self.b.device)
        tensors = self._layer_tensors()
        self.parked.append(([[t.index_select(0, ip) for t in layer] for layer in tensors],
                            self.mask.index_select(0, ip), self.pos.index_select(0, ip), [self.rows[s] for s in park]))
        self._set_layer_tensors([[t.index_select(0, ik) for t in layer] for layer in tensors])
        self.mask, self.pos = self.mask.index_select(0, ik), self.pos.index_select(0, ik)
        self.rows = [self.rows[s] for s in keep]
        self.parks += 1

    def _unpark(self) -> None:
        """Bring parked rows back; the columns they missed become masked padding (right side)."""
        if not self.parked:
            return
        width = self.mask.shape[1]
        tensors, masks, pos, rows = self._layer_tensors(), [self.mask], [self.pos], list(self.rows)
        for p_tensors, p_mask, p_pos, p_rows in self.parked:
            gap = width - p_mask.shape[1]
            for layer, p_layer in zip(tensors, p_tensors):
                for i, t in enumerate(p_layer):
                    shape = list(t.shape)
                    shape[-2] = gap
                    layer[i] = torch.cat([layer[i], torch.cat([t, t.new_zeros(shape)], dim=-2)], dim=0)
            masks.append(torch.cat([p_mask, p_mask.new_zeros(p_mask.shape[0], gap)], dim=1))
            pos.append(p_pos)
            rows += p_rows
        self._set_layer_tensors(tensors)
        self.mask, self.pos, self.rows = torch.cat(masks), torch.cat(pos), rows
        self.parked = []
