"""Recipes beside RL: supervised fine-tuning on trajectories, and rejection sampling.

SFT uses the same masking as RL: only policy tokens (mask 1) carry the loss, so a
trajectory's retrieved ``<information>`` text is context, never a target.
Input: JSONL of ``{"prompt", "response"}`` (the whole response is a target; an EOS is
appended) or of trajectories ``{"prompt_ids", "response_ids", "response_mask"}``.

Rejection sampling: sample G trajectories per question with the current policy, keep
those whose reward >= ``sft.rs_min_score``, fine-tune on them; repeat ``sft.rs_rounds``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from searchr1.rl import distributed as D
from searchr1.rl.batch import Batch, autocast_ctx, collate, response_logits
from searchr1.rl.core_algos import aggregate_loss, agg_count, logprobs_from_logits
from searchr1.rollout.types import Trajectory


def load_sft_records(path: str | Path, tokenizer) -> list[Trajectory]:
    """Trajectories from an SFT JSONL file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data {path} not found; set sft.train_file to a JSONL file")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if "response_ids" in row:
                out.append(Trajectory(prompt_ids=list(row["prompt_ids"]), response_ids=list(row["response_ids"]),
                                      response_mask=list(row.get("response_mask") or [1] * len(row["response_ids"]))))
            elif "prompt" in row and "response" in row:
                p = tokenizer.encode(row["prompt"], add_special_tokens=False)
                r = tokenizer.encode(row["response"], add_special_tokens=False) + [tokenizer.eos_token_id]
                out.append(Trajectory(prompt_ids=p, response_ids=r, response_mask=[1] * len(r)))
            else:
                raise ValueError(f"{path}:{n}: need keys prompt+response or prompt_ids+response_ids(+response_mask)")
    if not out:
        raise ValueError(f"{path} holds no records")
    return out


def sft_loss(logits: torch.Tensor, mb: Batch, mask_retrieved: bool = True, norm=None) -> torch.Tensor:
    """Negative log-likelihood of the loss-masked response tokens (token-mean). logits: (b, R, V)."""
    mask = mb.loss_mask(mask_retrieved).float()
    return aggregate_loss(-logprobs_from_logits(logits, mb.responses), mask, "token-mean", norm)


def run_sft(policy, trajs: list[Trajectory], *, lr: float, epochs: int, batch_size: int, micro_batch_size: int,
            device, seed: int = 0, mask_retrieved: bool = True, autocast: bool = False,
            max_grad_norm: float = 1.0, optimizer=None) -> dict[str, float]:
    """Fine-tune ``policy`` on ``trajs``; returns the mean loss of the first and last epoch."""
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = optimizer or torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    full = collate(trajs, [0.0] * len(trajs))
    history = []
    policy.train()
    for _ in range(epochs):
        order = torch.randperm(len(full), generator=gen)
        losses = []
        for s in range(0, len(order), batch_size):
            part = full.select(order[s:s + batch_size])
            norm = D.all_sum(agg_count(part.loss_mask(mask_retrieved), "token-mean"))
            total = 0.0
            for m in range(0, len(part), micro_batch_size):
                mb = part.select(slice(m, m + micro_batch_size)).to(device)
                with autocast_ctx(device, autocast):
                    logits = response_logits(policy, mb)
                loss = sft_loss(logits, mb, mask_retrieved, norm)
                loss.backward()
                total += float(loss.detach())
            D.all_reduce_grads(params)
            gn = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
            if torch.isfinite(gn):
                opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(D.all_sum(torch.tensor(total))))
        history.append(sum(losses) / len(losses))
    return {"sft/loss_first_epoch": history[0], "sft/loss": history[-1], "sft/examples": float(len(trajs))}


def rejection_sampling(trainer, rounds: int, min_score: float) -> dict[str, float]:
    """Sample G per question with the trainer's policy, keep the good ones, SFT on them."""
    cfg = trainer.cfg
    G = cfg.algorithm.group_size
    out: dict[str, float] = {}
    for r in range(rounds):
        q_idx = D.shard(list(range(len(trainer.train_examples))), trainer.dist)
        exs = [trainer.train_examples[i] for i in q_idx for _ in range(G)]
        trajs, _ = trainer.rollout(exs, [i for i in q_idx for _ in range(G)], seed=cfg.seed + r)
        scores, _ = trainer.reward_fn(trajs, exs)
        kept = [t for t, s in zip(trajs, scores) if s >= min_score]
        n_kept = int(D.all_sum(torch.tensor(float(len(kept)))))
        out[f"rs/round{r}_kept"] = float(n_kept)
        out[f"rs/round{r}_reward"] = float(D.all_sum(torch.tensor(sum(scores)))) / max(1, int(
            D.all_sum(torch.tensor(float(len(scores))))))
        if not kept:
            continue
        out.update(run_sft(trainer.policy, kept, lr=cfg.sft.lr, epochs=cfg.sft.epochs,
                           batch_size=cfg.data.mini_batch_size * G, micro_batch_size=cfg.data.micro_batch_size,
                           device=trainer.device, seed=cfg.seed + r, mask_retrieved=cfg.algorithm.mask_retrieved,
                           autocast=cfg.model.bf16_autocast, max_grad_norm=cfg.optimizer.max_grad_norm))
    return out
