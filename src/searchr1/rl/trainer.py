"""The RL loop: questions -> prompts -> multi-turn rollout -> rewards -> learner update.

One step::

    batch of questions (seeded order, resumable position), this rank's shard
      -> prompt text (data.prompts) repeated G times (group id = the question's index)
      -> RolloutEngine(backend, retriever, tokenizer, rollout config with a per-step seed).run(...)
         (rollout.backend=vllm: the engine first gets the policy's weights if an update changed them)
      -> outcome reward on the policy's own answer (rewards.compute_score, EM by default)
      -> Learner.prepare (old/ref log-probs, values, advantages) -> Learner.update (PPO epochs)
      -> metrics (JSONL / TensorBoard / wandb), guards, validation, checkpoints

Rank 0 alone logs and writes checkpoints; every rank holds the same weights (with vLLM, every rank
pushes them into its own engine).
The rollout seed is derived from (seed, step, rank), so a resumed run samples exactly
what the uninterrupted run would have sampled.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch

from searchr1.data.load import load_qa
from searchr1.data.prompts import apply_chat_template, make_prompt
from searchr1.rewards import compute_score, segments_from_mask
from searchr1.rl import checkpoint as ckpt
from searchr1.rl import distributed as D
from searchr1.rl import fsdp
from searchr1.rl.batch import Batch, collate, forward_logprobs
from searchr1.rl.cold_start import cold_start
from searchr1.rl.config import TrainConfig
from searchr1.rl.diagnostics import collapse_metrics, collapse_warnings
from searchr1.rl.engines import engine_logprobs, hf_backend, holds_own_weights, logprob_abs_diff, vllm_backend
from searchr1.rl.learner import Learner
from searchr1.rl.models import build_retriever, load_policy, load_weights, save_final, wrap_policy
from searchr1.rl.run_report import public_config, write_run_report
from searchr1.rl.signal_watch import SignalWatch
from searchr1.rl.tracking import Tracker
from searchr1.rollout.engine import RolloutEngine, rollout_metrics
from searchr1.search.guard import GuardedRetriever, startup_check

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class QuestionSampler:
    """Epoch-wise seeded permutations; ``position`` = (epoch, cursor) for exact resumption."""

    def __init__(self, n: int, seed: int, shuffle: bool = True):
        if n == 0:
            raise ValueError("no training questions; check data.train_file")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.cursor = 0, 0

    def _perm(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch)).tolist()

    def next(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            perm = self._perm()
            take = perm[self.cursor:self.cursor + k - len(out)]
            out += take
            self.cursor += len(take)
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
        return out


def score_trajectories(trajs, examples, tokenizer, kind: str) -> tuple[list[float], dict[str, float]]:
    """Outcome reward of each trajectory on the policy-written text; mean components.

    The engine records each trajectory's segments; trajectories built elsewhere (no segments) are
    split by their provenance mask here."""
    def decode(ids):
        return tokenizer.decode(ids, skip_special_tokens=False)

    scores, comps = [], {}
    for t, ex in zip(trajs, examples):
        segs = t.segments or segments_from_mask(t.response_ids, t.response_mask, decode)
        s, c = compute_score(t.response_text, ex.golden_answers, kind, segments=segs)
        scores.append(float(s))
        for k, v in c.items():
            comps[k] = comps.get(k, 0.0) + float(v)
    n = max(1, len(trajs))
    return scores, {k: v / n for k, v in comps.items()}


class Trainer:
    """``Trainer(cfg, ...).fit()``. Objects passed in (policy, tokenizer, retriever, examples,
    backend factory) override what the config would load; the rest is built from ``cfg``."""

    def __init__(self, cfg: TrainConfig, *, policy=None, tokenizer=None, retriever=None,
                 train_examples=None, val_examples=None, make_backend=None, reward_fn=None,
                 log_to_disk: bool = True, run_id: str | None = None):
        self.cfg = cfg
        self.dist = D.current()
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        rolls_out = cfg.recipe != "sft"      # SFT reads its own data and never samples
        self.retriever, self.search_guard = self._setup_retriever(retriever, rolls_out)
        if policy is None or tokenizer is None:
            policy, tokenizer = load_policy(cfg.model, self.device)
        self.tokenizer = tokenizer
        if train_examples is None:
            train_examples = self._load(cfg.data.train_file, cfg.data.max_train_examples) if rolls_out else []
        self.train_examples = train_examples
        self.val_examples = val_examples if val_examples is not None else (
            self._load(cfg.data.val_file, cfg.data.max_val_examples) if cfg.data.val_file else [])
        self.cold_start_report: dict = {"mode": "never"}
        if cfg.recipe == "rl":   # the SFT'd, merged policy is also the KL reference
            policy, self.cold_start_report = cold_start(cfg, policy.to(self.device), tokenizer, self.retriever,
                                                 self.train_examples, self.val_examples, self.device)
        self.policy = wrap_policy(policy.to(self.device), cfg.model)
        # fsdp: the rollout generates on a full copy, refreshed from the shards before each rollout
        self.rollout_model = fsdp.rollout_copy(cfg, self.policy, self.dist.world_size)
        self.make_backend = make_backend or self._default_backend
        self._backend = None
        self.backend_in_use = None     # the backend of the last rollout
        self.policy_version = 0        # bumped by every update and resume; the engine's weights are of
        self._engine_version = None    # this version (None: never pushed)
        # reward_fn(trajs, examples) -> (scores, mean components); default: compute_score on the answer
        self.reward_fn = reward_fn or (lambda trajs, exs: score_trajectories(trajs, exs, self.tokenizer,
                                                                            cfg.algorithm.reward))
        self.learner = Learner(cfg, self.policy, self.device)
        self.sampler = QuestionSampler(len(self.train_examples), cfg.seed, cfg.data.shuffle) if rolls_out else None
        self.step = 0
        self.out = Path(cfg.output_dir)
        self.log_to_disk = log_to_disk and self.dist.is_main
        self.stop_reason: str | None = None
        self.run_id = run_id

    def _setup_retriever(self, retriever, rolls_out: bool):
        """(retriever, guard): the given or configured retriever behind the failure policy; one
        built from the config is probed (health + one search) before anything else loads."""
        if not (self.cfg.rollout.search_enabled and rolls_out):
            return retriever, None
        d = self.cfg.data
        probe = retriever is None
        if probe:
            retriever = build_retriever(d, self.cfg.search)
        guard = GuardedRetriever(retriever, d.search_failure_policy, d.max_consecutive_search_failures,
                                 d.max_search_failure_rate)
        if probe:
            startup_check(guard)
        return guard, guard

    def set_train_examples(self, examples, seed: int | None = None) -> None:
        """Train on ``examples`` from the next step on (a curriculum stage), with a fresh question order
        seeded by ``seed`` (default: the run's seed)."""
        self.train_examples = list(examples)
        self.sampler = QuestionSampler(len(self.train_examples), self.cfg.seed if seed is None else seed,
                                       self.cfg.data.shuffle)

    def _default_backend(self, policy, tokenizer):
        """One backend for the whole run: HFBackend (it keeps its stop-string tables between steps and
        runs the policy's live weights) or, with ``rollout.backend=vllm``, one vLLM engine that
        :meth:`sync_engine` keeps on the policy's weights."""
        if self._backend is None:
            self._backend = (vllm_backend(self.cfg) if self.cfg.rollout.backend == "vllm"
                             else hf_backend(policy, tokenizer))
        return self._backend

    def sync_engine(self, backend, policy=None) -> dict[str, float]:
        """Before a rollout: push ``policy``'s weights (default: the policy; under fsdp the gathered full copy)
        into a backend that holds its own copy (vLLM) when an update (or a resume) changed them since the last
        push, or wake it up; ``time/weight_sync``."""
        if not holds_own_weights(backend):
            return {}
        if self._engine_version == self.policy_version:
            if hasattr(backend, "wake_up"):
                backend.wake_up()
            return {}
        seconds = backend.sync_weights(self.policy if policy is None else policy)
        self._engine_version = self.policy_version
        return {"time/weight_sync": seconds}

    @staticmethod
    def _load(path: str, limit: int):
        if not path:
            raise ValueError("no training data: set data.train_file (FlashRAG jsonl or Search-R1 parquet)")
        ex = load_qa(path)
        return ex[:limit] if limit else ex

    # ------------------------------------------------------------------ rollout
    def prompts_for(self, examples) -> list[str]:
        return [apply_chat_template(self.tokenizer, make_prompt(ex.question, self.cfg.data.prompt_template))
                for ex in examples]

    def rollout(self, examples, group_ids, seed: int | None, greedy: bool = False):
        """Trajectories for ``examples`` (already repeated G times) and the engine timings."""
        rcfg = dataclasses.replace(self.cfg.rollout, seed=seed, do_sample=not greedy and self.cfg.rollout.do_sample)
        full = self._full_policy()
        backend = self.make_backend(full, self.tokenizer)
        synced = self.sync_engine(backend, full)
        self.backend_in_use = backend
        engine = RolloutEngine(backend, self.retriever, self.tokenizer, rcfg)
        self.policy.eval()
        with torch.no_grad():
            trajs = engine.run(self.prompts_for(examples), [ex.id for ex in examples], group_ids)
        return trajs, {**engine.timings, **synced}

    def logprob_mismatch(self, trajs, batch: Batch) -> dict[str, float]:
        """``rollout/logprob_abs_diff_{mean,max}``: |engine log-prob - trainer log-prob| over the policy's tokens,
        when a separate engine (vLLM) sampled. The trainer's are ``batch.old_logp`` when prepare computed them,
        else one no-grad pass here (``time/logprob_check``)."""
        if batch.rollout_logp is None:
            return {}
        t0 = time.perf_counter()
        trainer = batch.old_logp
        if trainer is None:
            trainer, _ = forward_logprobs(self.policy, batch, self.cfg.data.micro_batch_size, self.learner.temperature,
                                          self.cfg.model.bf16_autocast, mode=self.learner.eval_mode,
                                          chunk_size=self.cfg.actor.logprob_chunk_size)
        mean, peak = logprob_abs_diff(batch.rollout_logp.cpu(), trainer.cpu(), batch.policy_mask.cpu())
        return {"rollout/logprob_abs_diff_mean": mean, "rollout/logprob_abs_diff_max": peak,
                "time/logprob_check": time.perf_counter() - t0}

    def _full_policy(self):
        """The policy with full weights: itself, or under fsdp the rollout copy after gathering the
        shards into it (collective: every rank calls it)."""
        if self.rollout_model is None:
            return self.policy
        fsdp.copy_full_weights(self.policy, self.rollout_model)
        return self.rollout_model.eval()

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        cfg, G = self.cfg, self.cfg.algorithm.group_size
        t0 = time.perf_counter()
        q_idx = D.shard(self.sampler.next(cfg.data.batch_size), self.dist)
        examples = [self.train_examples[i] for i in q_idx for _ in range(G)]
        groups = [i for i in q_idx for _ in range(G)]
        seed = (cfg.seed * 1_000_003 + self.step * 1009 + self.dist.rank) % 2**31
        trajs, timings = self.rollout(examples, groups, seed)
        t1 = time.perf_counter()
        scores, comps = self.reward_fn(trajs, examples)
        batch = collate(trajs, scores, pad_id=self.tokenizer.pad_token_id or 0)
        batch.rollout_logp = engine_logprobs(trajs, batch) if holds_own_weights(self.backend_in_use) else None
        metrics = self._reduce_means({**rollout_metrics(trajs), "reward/mean": sum(scores) / len(scores),
                                      **{f"reward/{k}": v for k, v in comps.items()},
                                      **collapse_metrics(trajs, scores)})
        if holds_own_weights(self.backend_in_use) and hasattr(self.backend_in_use, "sleep"):
            self.backend_in_use.sleep()   # frees its memory for the update where the platform can (GPU)
        t2 = time.perf_counter()
        metrics.update(self.learner.prepare(batch))
        metrics.update(self._reduce_means(self.logprob_mismatch(trajs, batch)))
        t3 = time.perf_counter()
        metrics.update(self.learner.update(batch, seed, step=self.step))
        self.policy_version += 1
        t4 = time.perf_counter()
        tokens = float(D.all_sum(batch.attention_mask.sum()))
        metrics.update({
            **{k: v for k, v in timings.items()}, "time/reward": t2 - t1, "time/prepare": t3 - t2,
            "time/update": t4 - t3, "time/step": t4 - t0,
            "throughput/tokens_per_s": tokens / (t4 - t0), "throughput/update_tokens_per_s": tokens / (t4 - t2),
        })
        self.step += 1
        return metrics

    def _reduce_means(self, m: dict[str, float]) -> dict[str, float]:
        if not self.dist.enabled:
            return m
        keys = sorted(m)
        v = D.all_sum(torch.tensor([m[k] for k in keys])) / self.dist.world_size
        return dict(zip(keys, v.tolist()))

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Greedy rollout on the held-out questions: EM / F1 and rollout stats under ``val/``."""
        if not self.val_examples:
            return {}
        exs = D.shard(list(self.val_examples), self.dist)
        trajs, _ = self.rollout(exs, list(range(len(exs))), seed=self.cfg.seed, greedy=True)
        _, comps = score_trajectories(trajs, exs, self.tokenizer, "em")
        m = {f"val/{k}": v for k, v in comps.items()}
        m.update({"val/" + k.split("/", 1)[1]: v for k, v in rollout_metrics(trajs).items()})
        return self._reduce_means(m)

    # ------------------------------------------------------------------ guards
    def check_guards(self, m: dict[str, float]) -> str | None:
        g = self.cfg.guards
        ent, kl = m.get("actor/entropy"), m.get("actor/kl")
        problems = []
        if ent is not None and g.entropy_min is not None and ent < g.entropy_min:
            problems.append(f"entropy {ent:.4f} < guards.entropy_min={g.entropy_min} (collapse)")
        if ent is not None and g.entropy_max is not None and ent > g.entropy_max:
            problems.append(f"entropy {ent:.4f} > guards.entropy_max={g.entropy_max}")
        if kl is not None and g.kl_max is not None and kl > g.kl_max:
            problems.append(f"KL {kl:.4f} > guards.kl_max={g.kl_max}")
        problems += collapse_warnings(m, g.max_same_reward_groups, g.min_rewarded_logp, g.max_invalid_rate)
        if not problems:
            return None
        msg = f"step {self.step}: " + "; ".join(problems)
        log.warning(msg)
        return msg if g.early_stop else None

    # ------------------------------------------------------------------ checkpoints
    @property
    def ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def save(self) -> Path | None:
        sharded = None
        if self.learner.fsdp:   # every rank writes its shards, then rank 0 completes the checkpoint
            sharded = self.ckpt_root / f".tmp_sharded_step_{self.step:06d}"
            fsdp.save_sharded(sharded, self.learner.sharded_state())
        export = self._full_policy()
        critic = self.learner.critic if self.cfg.checkpoint.save_critic else None
        if critic is not None and sharded is not None:   # gathered to rank 0 (collective), like the policy
            critic = fsdp.GatheredCritic(critic)
        if self.dist.is_main:
            state = {"step": self.step, "sampler": {"epoch": self.sampler.epoch, "cursor": self.sampler.cursor},
                     "learner": self.learner.state_dict(), "rng": ckpt.rng_state()}
            if self.search_guard is not None:
                state["search_guard"] = self.search_guard.state_dict()
            path = ckpt.save_checkpoint(self.ckpt_root, self.step, export, self.tokenizer, state, critic,
                                        self.cfg.checkpoint.keep_last, run_id=self.run_id, sharded=sharded)
        else:
            path = None
        D.barrier()
        return path

    def resume(self, path: str | Path | None = None) -> int:
        """Load the given checkpoint, or the newest readable one of this run; returns the step.

        An unreadable checkpoint (torn weights or trainer state) is skipped with a warning naming
        the file, renamed to ``unreadable-step_N`` (kept, never loaded again) and the previous
        complete one is tried."""
        if path:
            return self._load_checkpoint(Path(path))
        mine = ckpt.checkpoint_dirs(self.ckpt_root)
        if self.run_id is not None:
            mine = [p for p in mine if ckpt.checkpoint_run_id(p) in (self.run_id, None)]
        if not mine:
            raise FileNotFoundError(f"--resume: no complete checkpoint under {self.ckpt_root}; "
                                    "train without --resume first or point output_dir at the old run")
        skipped = []
        for p in reversed(mine):
            try:
                return self._load_checkpoint(p)
            except ckpt.CheckpointError as e:
                skipped.append(str(e))
                log.warning("--resume: skipping %s: %s; falling back to the previous complete checkpoint", p.name, e)
                if self.dist.is_main:
                    log.warning("--resume: moved %s to %s", p.name, ckpt.set_aside_unreadable(p).name)
        raise ckpt.CheckpointError(f"--resume: no readable checkpoint under {self.ckpt_root}: " + "; ".join(skipped))

    def _load_checkpoint(self, path: Path) -> int:
        state = ckpt.load_state(path)
        if (path / "sharded").is_dir():   # written under fsdp; loads at any world size and strategy
            fsdp.load_sharded(path / "sharded", self.learner.sharded_state())
        else:
            load_weights(self.policy, path / "policy", lora=self.cfg.model.lora_rank > 0)
        if self.learner.critic is not None and (path / "critic").is_dir() and not (path / "sharded").is_dir():
            load_weights(self.learner.critic.lm, path / "critic")
            self.learner.critic.load_head(path / "critic")
        self.learner.load_state_dict(state["learner"])
        self.sampler.epoch, self.sampler.cursor = state["sampler"]["epoch"], state["sampler"]["cursor"]
        self.step = int(state["step"])
        self.policy_version += 1
        ckpt.set_rng_state(state["rng"])
        if self.search_guard is not None and "search_guard" in state:
            self.search_guard.load_state_dict(state["search_guard"])
        log.info("resumed from %s (step %d)", path, self.step)
        return self.step

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False, overwrite: bool = False) -> dict[str, float]:
        """Train to ``total_steps``. A fresh run refuses an ``output_dir`` holding another run's
        checkpoints unless ``overwrite`` (moves them to ``previous-<n>/``); see checkpoint.start_run."""
        cfg = self.cfg
        if self.run_id is None and self.dist.is_main:
            self.run_id = ckpt.start_run(self.out, resume, overwrite)
        if resume:
            self.resume()
        if self.log_to_disk:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(public_config(cfg), indent=2, default=str))
        tracker = Tracker(self.out, cfg.logging, cfg.total_steps, self.step, public_config(cfg),
                          enabled=self.log_to_disk)
        groups = cfg.algorithm.name != "ppo" and cfg.algorithm.skip_zero_adv   # updates skipped without signal
        watch = SignalWatch(cfg.guards.max_zero_adv_steps if groups else 0)
        last: dict[str, float] = {}
        val_log: list[dict[str, float]] = []     # (step, val/...) rows for report.md
        try:
            if cfg.logging.val_every and self.val_examples and self.step == 0:   # the curves start at the start
                val_log.append({"step": 0, **self.validate()})
                tracker.log(0, val_log[-1])
            while self.step < cfg.total_steps:
                last = self.train_step()
                if self.search_guard is not None:
                    last.update(self.search_guard.counters())
                if cfg.logging.val_every and self.step % cfg.logging.val_every == 0:
                    last.update(self.validate())
                    val_log.append({"step": self.step, **{k: v for k, v in last.items() if k.startswith("val/")}})
                tracker.log(self.step, last)
                watch.update(last)
                stop = self.check_guards(last)
                if cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0 or stop:
                    self.save()
                if stop:
                    self.stop_reason = stop
                    break
            if self.val_examples and not (val_log and val_log[-1]["step"] == self.step):
                val = self.validate()
                tracker.log(self.step, val)
                last.update(val)
                val_log.append({"step": self.step, **val})
            if not self.stop_reason and not (cfg.checkpoint.every and self.step % cfg.checkpoint.every == 0):
                self.save()
            final = self._full_policy()
            if self.log_to_disk:
                save_final(final, self.tokenizer, self.out / "final", lora=cfg.model.lora_rank > 0)
        finally:
            tracker.close()
        if self.log_to_disk:
            write_run_report(self.out, cfg, self.cold_start_report, val_log, last, self.stop_reason)
        return last


