"""Cold start: teach the policy the search protocol by SFT before RL, when it cannot produce it yet.

RL from an outcome reward needs some sampled trajectories to be rewarded: a small instruct model given the
Search-R1 prompt writes no valid ``<search>`` / ``<answer>`` at all, every group scores 0 and GRPO learns
nothing. ``cold_start.mode=auto`` therefore

1. **probes** the policy: samples one trajectory for each of ``probe_questions`` held-out questions with the
   run's rollout settings and measures format validity (the reward grammar of ``searchr1.rewards``);
2. below ``min_format`` (or always, with ``mode=always``) it **fine-tunes** a LoRA adapter on
   ``teacher_trajectories`` scripted-teacher trajectories (``data.traces.teacher_segments``: search the gold
   hop queries, read the real results, answer), with the rollout's exact token layout and the retrieved
   tokens masked out of the loss, then **merges** the adapter into the weights;
3. RL then starts from the merged model, which is also the KL reference (a fresh RL adapter goes on top).

The adapter is cached under ``$SEARCHR1_CACHE/cold-start/<key>/`` (key: the model, the teacher data, the
prompt template and these settings), so a second run skips the SFT. Teacher trajectories need questions that
carry ``metadata["hop_queries"]`` (SearchWorld's do); other data sets need SFT data of their own
(``--recipe sft`` with ``sft.train_file``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from searchr1.data.prompts import apply_chat_template, make_prompt
from searchr1.data.traces import pick_teacher_questions, teacher_segments
from searchr1.errors import ConfigError
from searchr1.models.smollm2 import cache_root
from searchr1.rewards import exact_match, segments_from_mask, validate_format
from searchr1.rl.config import TrainConfig
from searchr1.rl.sft import run_sft
from searchr1.rollout.backends.hf import HFBackend
from searchr1.rollout.engine import RolloutEngine
from searchr1.rollout.types import Trajectory

log = logging.getLogger(__name__)


def probe_format(cfg: TrainConfig, policy, tokenizer, retriever, questions, seed: int) -> dict[str, float]:
    """Sampled trajectories (the run's rollout settings) on ``questions``: format validity, EM, searches."""
    base = policy.get_base_model() if hasattr(policy, "get_base_model") else policy
    rcfg = dataclasses.replace(cfg.rollout, seed=seed)
    engine = RolloutEngine(HFBackend(base, tokenizer), retriever, tokenizer, rcfg)
    prompts = [apply_chat_template(tokenizer, make_prompt(q.question, cfg.data.prompt_template)) for q in questions]
    with torch.no_grad():
        trajs = engine.run(prompts, [q.id for q in questions])
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=False)   # noqa: E731
    valid = [validate_format(t.response_text, segments=segments_from_mask(t.response_ids, t.response_mask, decode)).ok
             for t in trajs]
    n = max(1, len(trajs))
    return {"format": sum(valid) / n, "em": sum(exact_match(t.answer, q.golden_answers)
                                                for t, q in zip(trajs, questions)) / n,
            "searches": sum(t.searches for t in trajs) / n}


def teacher_trajectories(cfg: TrainConfig, tokenizer, retriever, questions) -> list[Trajectory]:
    """Scripted-teacher trajectories laid out as the rollout lays them out: the chat-formatted prompt, each
    policy-written piece and each observation tokenized on its own (observations mask 0), then EOS."""
    out = []
    for q in questions:
        prompt = apply_chat_template(tokenizer, make_prompt(q.question, cfg.data.prompt_template))
        ids, mask = [], []
        for text, sampled in teacher_segments(q, retriever, cfg.rollout.topk):
            piece = tokenizer.encode(text, add_special_tokens=False)
            ids += piece
            mask += [int(sampled)] * len(piece)
        ids.append(tokenizer.eos_token_id)
        mask.append(1)
        out.append(Trajectory(prompt_ids=tokenizer.encode(prompt, add_special_tokens=False), response_ids=ids,
                              response_mask=mask, example_id=q.id))
    return out


def cache_key(cfg: TrainConfig, tokenizer, questions, trajs: list[Trajectory]) -> str:
    """The adapter's cache key: the model, the teacher's exact token ids and masks, the SFT settings."""
    c = cfg.cold_start
    teacher = hashlib.sha256(json.dumps([(t.prompt_ids, t.response_ids, t.response_mask) for t in trajs]).encode())
    blob = json.dumps({
        "teacher": teacher.hexdigest(),
        "model": cfg.model.path, "tokenizer": cfg.model.tokenizer, "dtype": cfg.model.dtype,
        "template": cfg.data.prompt_template, "chat": getattr(tokenizer, "chat_template", None) or "",
        "questions": [(q.id, q.question, q.metadata.get("hop_queries")) for q in questions],
        "retriever": cfg.search.backend or cfg.data.index_dir or cfg.data.retriever_url, "topk": cfg.rollout.topk,
        "sft": [c.teacher_trajectories, c.epochs, c.lr, c.lora_rank, c.lora_alpha, c.batch_size, cfg.seed],
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cold_start(cfg: TrainConfig, policy, tokenizer, retriever, train_examples, val_examples, device):
    """The policy to start RL from (``policy`` itself, or it with the cold-start adapter merged) and a report."""
    c = cfg.cold_start
    report: dict = {"mode": c.mode}
    if c.mode == "never":
        return policy, report
    probe_pool = list(val_examples or train_examples)
    probe_qs = random.Random(cfg.seed).sample(probe_pool, min(c.probe_questions, len(probe_pool)))
    if c.mode == "auto":
        report["before"] = probe_format(cfg, policy, tokenizer, retriever, probe_qs, cfg.seed)
        log.info("cold start: probe of the policy on %d questions: %s", len(probe_qs), report["before"])
        if report["before"]["format"] >= c.min_format:
            report["ran"] = False
            log.info("cold start: not needed (format %.2f >= cold_start.min_format=%.2f)",
                     report["before"]["format"], c.min_format)
            return policy, report
    picked = pick_teacher_questions(list(train_examples), c.teacher_trajectories, cfg.seed)
    if not picked:
        raise ConfigError("cold start: the training questions carry no metadata['hop_queries'], so there is no "
                          "scripted teacher; give SFT data with sft.train_file (--recipe sft) first, or set "
                          "cold_start.mode=never")
    trajs = teacher_trajectories(cfg, tokenizer, retriever, picked)
    key = cache_key(cfg, tokenizer, picked, trajs)
    cache = Path(c.cache_dir or cache_root() / "cold-start") / key
    lora = LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")
    t0 = time.perf_counter()
    if (cache / "adapter_config.json").is_file():
        model = PeftModel.from_pretrained(policy, str(cache))
        report.update(json.loads((cache / "report.json").read_text()), cached=True)
        log.info("cold start: using the cached adapter %s", cache)
    else:
        model = get_peft_model(policy, lora)
        log.info("cold start: SFT on %d teacher trajectories, %d epochs, lr %g", len(trajs), c.epochs, c.lr)
        sft = run_sft(model, trajs, lr=c.lr, epochs=c.epochs, batch_size=c.batch_size,
                      micro_batch_size=cfg.data.micro_batch_size, device=device, seed=cfg.seed)
        report.update({"sft": sft, "trajectories": len(trajs), "sft_seconds": round(time.perf_counter() - t0, 1)})
        model.save_pretrained(str(cache))
        (cache / "report.json").write_text(json.dumps({k: v for k, v in report.items()
                                                        if k in ("sft", "trajectories", "sft_seconds")}))
    merged = model.merge_and_unload().requires_grad_(True)   # peft froze the base; RL decides what trains
    report.update(ran=True, key=key, adapter=str(cache))
    if c.probe_after:
        report["after"] = probe_format(cfg, merged, tokenizer, retriever, probe_qs, cfg.seed)
        log.info("cold start: after SFT: %s", report["after"])
    return merged, report
