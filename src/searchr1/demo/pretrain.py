"""Build the demo's base model: a locally trained tokenizer and a tiny copy-capable LM.

"Pretraining" here is language modelling on protocol-format trajectories written by
a **random** policy (see ``traces.py``) over *shadow worlds*: SearchWorlds drawn from
other seeds, a fresh one for every batch. Because the facts change every batch,
nothing but reading and copying can lower the loss, and the base model never sees
the demo world itself. It learns the format (think / search / information / answer)
and how to copy spans, not when or what to search: its queries are random spans of
the question and its answers random mentions. That strategy is what RL must learn.

The mix also holds the baselines' templates (``r1``, ``direct``, ``rag``) with
random-candidate answers, so every method in the comparison starts from a base
model that knows its output format.

The result is saved with ``save_pretrained`` under ``<cache>/<config hash>/`` and
reused when present (a second ``make demo`` skips pretraining).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from searchr1.data.prompts import make_prompt
from searchr1.data.world import World, WorldConfig, generate_world
from searchr1.demo.tokenizer import EOS, train_tokenizer
from searchr1.data.traces import (THINKS, answer_candidates, candidate_mentions, entity_kinds, random_policy_response,
                                  supported, typed)
from searchr1.models.copy_lm import CopyQwen2Config, CopyQwen2ForCausalLM, register_copy_lm
from searchr1.search.bm25 import BM25Retriever, BM25Config

TEMPLATE_MIX = (("search-r1", 0.6), ("r1", 0.15), ("direct", 0.1), ("rag", 0.15))


@dataclass
class PretrainConfig:
    seed: int = 0
    """Seeds the shadow worlds (seed*100003 + batch), the sampling of traces and the init."""
    vocab_size: int = 1024
    """BPE vocabulary size (tags and EOS included)."""
    hidden_size: int = 96
    layers: int = 2
    heads: int = 4
    copy_dim: int = 48
    """Pointer-head width (see searchr1.models.copy_lm)."""
    copy_match_lags: int = 3
    """Exact-match induction features of the pointer head (searchr1.models.copy_lm)."""
    answer_type_prior: bool = True
    """The random policy answers with a mention of the kind the question asks for (see traces.py)."""
    reader: bool = True
    """The random policy (and the rag template) answers right when what it read holds every evidence
    passage — reading comprehension, the skill a pretrained LM brings; its searches stay random."""
    restate: bool = True
    """The random policy's thinks restate the question (traces.RESTATE) and, with ``reader``, note the
    sentence read that bears on it (traces.read_fact), instead of generic phrases."""
    follow_leads: float = 0.5
    """A second search follows a lead (a mention of the top passage it just read, uniformly) with this
    probability; otherwise any candidate query (0.0 = uniform over all candidates, which almost never
    searches the bridge entity: docs/demo.md)."""
    steps: int = 1000
    """Optimizer steps (each on one shadow world, cycled); fewer leave a base that copies names too
    loosely for RL to start (docs/benchmarks.md)."""
    batch_size: int = 16
    lr: float = 3e-3
    max_len: int = 640
    """Training sequences are cut to this many tokens."""
    topk: int = 3
    """Passages per search in the traces (match the demo's rollout topk)."""
    shadow_people: int = 40
    """Size of each shadow world (people; works = people // 5)."""
    min_searches: int = 1
    """The random policy searches between min_searches and 2 times per trace."""
    shadow_worlds: int = 50
    """Distinct shadow worlds, cycled through (step i uses world i mod shadow_worlds)."""

    def __post_init__(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads})")
        if min(self.steps, self.batch_size, self.layers, self.topk) < 1 or self.lr <= 0:
            raise ValueError("steps, batch_size, layers, topk must be >= 1 and lr > 0")
        if not 0 <= self.min_searches <= 2:
            raise ValueError(f"min_searches={self.min_searches}: use 0, 1 or 2 (the random policy searches at most twice)")
        if not 0.0 <= self.follow_leads <= 1.0:
            raise ValueError(f"follow_leads={self.follow_leads} is a probability: use a value in [0, 1]")
        if self.shadow_worlds < 1:
            raise ValueError("shadow_worlds must be >= 1")
        if self.shadow_people < 10:
            raise ValueError(f"shadow_people={self.shadow_people}: use >= 10 so each shadow world has questions")

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def shadow_world(cfg: PretrainConfig, index: int) -> tuple[World, BM25Retriever]:
    world = generate_world(WorldConfig(seed=cfg.seed * 100003 + 7919 + index, people=cfg.shadow_people,
                                       works=max(2, cfg.shadow_people // 5), dev_frac=0.0, test_frac=0.0))
    return world, BM25Retriever.build(world.documents, BM25Config(backend="numpy"))


def sample_text(world: World, retriever: BM25Retriever, rng: random.Random, topk: int,
                min_searches: int = 0, kinds: dict[str, str] | None = None, reader: bool = False,
                restate: bool = False, follow_leads: float = 0.0) -> str:
    """One pretraining sequence: a prompt of a random template and a random-policy response.
    ``kinds`` (:func:`entity_kinds`): answer with mentions of the asked kind; None = any mention.
    ``reader``: answer right when the passages read hold the question's evidence (traces.py)."""
    q = rng.choice(world.questions)
    names, weights = zip(*TEMPLATE_MIX)
    template = rng.choices(names, weights)[0]
    think = f"<think> {rng.choice(THINKS)} </think>\n"
    if template == "search-r1":
        response = random_policy_response(q, retriever, rng, topk, min_searches, kinds=kinds, reader=reader,
                                          restate=restate, follow_leads=follow_leads)
        return make_prompt(q.question) + response + EOS
    if template == "rag":
        hits = retriever.search([q.question], topk)[0]
        pool = (typed(answer_candidates(" ".join(h.doc.contents for h in hits), q.question), q, kinds)
                or [q.metadata["subject"]])
        answer = q.golden_answers[0] if reader and supported(q, {h.doc.id for h in hits}) else rng.choice(pool)
        return make_prompt(q.question, "rag", hits) + _sep(rng) + f"<answer> {answer} </answer>" + EOS
    pool = candidate_mentions(q.question) or q.question.split()
    body = f"<answer> {rng.choice(pool)} </answer>"
    return make_prompt(q.question, template) + _sep(rng) + (think if template == "r1" else "") + body + EOS


def _sep(rng: random.Random) -> str:
    """Single-prompt evaluators may append a blank line after a raw prompt; see both forms."""
    return rng.choice(("", "\n\n"))


def _tokenizer_texts(cfg: PretrainConfig, rng: random.Random) -> list[str]:
    texts = []
    for i in range(8):
        world, retriever = shadow_world(cfg, -1 - i)
        texts += [d.contents for d in world.documents]
        texts += [sample_text(world, retriever, rng, cfg.topk) for _ in range(40)]
    return texts


def build_base_model(cfg: PretrainConfig, out_dir: str | Path,
                     progress: Callable[[int, float], None] | None = None) -> dict:
    """Train tokenizer + model from scratch and save both to ``out_dir``; returns training stats."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    tok = train_tokenizer(_tokenizer_texts(cfg, rng), cfg.vocab_size)
    mcfg = CopyQwen2Config(vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=2 * cfg.hidden_size,
                           num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                           num_key_value_heads=cfg.heads, copy_dim=cfg.copy_dim, copy_match_lags=cfg.copy_match_lags,
                           max_position_embeddings=4096,
                           tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                           bos_token_id=None)
    model = CopyQwen2ForCausalLM(mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / cfg.steps))
    model.train()
    losses = []
    pool: dict[int, tuple[World, BM25Retriever, dict[str, str] | None]] = {}
    for step in range(cfg.steps):
        if step % cfg.shadow_worlds not in pool:
            world, retriever = shadow_world(cfg, step % cfg.shadow_worlds)
            kinds = entity_kinds(world) if cfg.answer_type_prior else None
            pool[step % cfg.shadow_worlds] = world, retriever, kinds
        world, retriever, kinds = pool[step % cfg.shadow_worlds]
        texts = [sample_text(world, retriever, rng, cfg.topk, cfg.min_searches, kinds, cfg.reader, cfg.restate,
                             cfg.follow_leads)
                 for _ in range(cfg.batch_size)]
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_len,
                  padding_side="right")
        labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
        loss = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=labels, use_cache=False).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress:
            progress(step + 1, losses[-1])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    stats = {"config": dataclasses.asdict(cfg), "parameters": sum(p.numel() for p in model.parameters()),
             "final_loss": sum(losses[-10:]) / min(10, len(losses)), "first_loss": losses[0],
             "seconds": time.perf_counter() - t0}
    (out / "pretrain.json").write_text(json.dumps(stats, indent=2))
    return stats


def load_base_model(path: str | Path):
    """(model, tokenizer) saved by ``build_base_model``, through the Auto classes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    register_copy_lm()
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


SHIPPED_BASE = Path(__file__).resolve().parent.parent / "assets" / "demo_base"
"""The default base model, built once by ``searchr1 pretrain --out`` and shipped with the package."""


def _built_with(path: Path, cfg: PretrainConfig) -> bool:
    """True when ``path`` holds a base built with exactly ``cfg`` (every field recorded and equal: a
    base saved before a field existed does not match, whatever that field's default is now)."""
    meta = path / "pretrain.json"
    return meta.is_file() and json.loads(meta.read_text())["config"] == json.loads(json.dumps(dataclasses.asdict(cfg)))


def ensure_base_model(cfg: PretrainConfig, cache_dir: str | Path, progress=None) -> tuple[Path, bool]:
    """The base model for ``cfg``: the shipped one when it was built with exactly ``cfg``, else the
    cached one, else built now and cached. Returns (path, built_now)."""
    if _built_with(SHIPPED_BASE, cfg):
        return SHIPPED_BASE, False
    path = Path(cache_dir) / f"base-{cfg.key()}"
    if _built_with(path, cfg):
        return path, False
    build_base_model(cfg, path, progress)
    return path, True
