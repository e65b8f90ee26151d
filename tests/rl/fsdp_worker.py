"""Run by ``torchrun`` from test_fsdp.py (and in-process for the single-process reference).

``python fsdp_worker.py OUT SPEC_JSON``: builds a tiny Qwen2 learner from SPEC (algorithm, LoRA,
chunking, strategy), takes this rank's half of one global batch, runs ``steps`` prepare + update
rounds (optionally saving a sharded checkpoint after ``save_at`` steps, or resuming from one first),
and rank 0 writes the full policy / critic weights and the metrics to OUT (torch.save).
"""
from __future__ import annotations

import copy
import json
import sys
import tempfile

import torch

from searchr1.rl import distributed as D
from searchr1.rl import fsdp as F
from searchr1.rl.batch import collate
from searchr1.rl.config import config_from_dict
from searchr1.rl.learner import Learner
from searchr1.rl.models import wrap_policy
from searchr1.rollout.types import Trajectory

V = 300


def tiny_model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))


def global_batch(step: int, rows: int = 8):
    """``rows`` trajectories, groups of two sharing a prompt; rewards alternate inside groups."""
    g = torch.Generator().manual_seed(100 + step)
    trajs = []
    for i in range(rows):
        prompt = torch.randint(0, V, (3 + i // 2,), generator=torch.Generator().manual_seed(step * 50 + i // 2)).tolist()
        r = 2 + (i * 3) % 5
        mask = [1] * r
        if i % 3 == 1:
            mask[1] = 0
        trajs.append(Trajectory(prompt_ids=prompt, response_ids=torch.randint(0, V, (r,), generator=g).tolist(),
                                response_mask=mask, group_id=step * 100 + i // 2))
    return trajs, [float((i + step) % 2) for i in range(rows)]


def config(spec: dict):
    algo = spec.get("algo", "grpo")
    over = ["model.path=unused", "device=cpu", f"output_dir={tempfile.mkdtemp()}", f"algorithm.name={algo}",
            f"algorithm.group_size={2 if algo == 'grpo' else 1}", "data.batch_size=8", "data.mini_batch_size=8",
            "data.micro_batch_size=2", "optimizer.actor_lr=0.01", "optimizer.critic_lr=0.01",
            "optimizer.actor_warmup_ratio=0", "optimizer.critic_warmup_ratio=0", "algorithm.kl_coef=0.05",
            "total_steps=10", f"actor.logprob_chunk_size={spec.get('chunk', 0)}",
            f"model.lora_rank={spec.get('lora', 0)}", f"distributed.strategy={spec.get('strategy', 'ddp')}",
            f"distributed.mixed_precision={str(spec.get('mp', False)).lower()}",
            f"distributed.cpu_offload={str(spec.get('offload', False)).lower()}",
            f"model.gradient_checkpointing={str(spec.get('gc', False)).lower()}"]
    if algo == "grpo":
        over.append("algorithm.kl_in=loss")
    return config_from_dict({}, over)


def run(out: str, spec: dict) -> None:
    info = D.init_distributed("cpu")
    cfg = config(spec)
    policy = wrap_policy(tiny_model(), cfg.model)
    init = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    learner = Learner(cfg, policy, torch.device("cpu"))
    start = 0
    if spec.get("resume"):
        F.load_sharded(spec["resume"] + "/sharded", learner.sharded_state())   # any world size, any strategy
        state = torch.load(spec["resume"] + "/learner.pt", weights_only=True)
        learner.load_state_dict(state)
        start = int(state["step"])
    metrics = []
    for step in range(start, spec.get("steps", 1)):
        trajs, scores = global_batch(step)
        mine = D.shard(list(range(len(trajs))), info)
        batch = collate([trajs[i] for i in mine], [scores[i] for i in mine])
        learner.prepare(batch)
        metrics.append(learner.update(copy.deepcopy(batch), seed=step))
        if spec.get("save_at") == step + 1:
            if learner.fsdp:
                F.save_sharded(spec["save_dir"] + "/sharded", learner.sharded_state())
            if info.is_main:
                torch.save({**learner.state_dict(), "step": step + 1}, spec["save_dir"] + "/learner.pt")
            D.barrier()
    full = F.full_state_dict(learner.policy) if learner.fsdp else {k: v.detach().clone() for k, v in
                                                                    learner.policy.state_dict().items()}
    critic = None
    if learner.critic is not None:
        critic = F.full_state_dict(learner.critic) if learner.fsdp else {
            k: v.detach().clone() for k, v in learner.critic.state_dict().items()}
    if info.is_main:
        torch.save({"policy": full, "critic": critic, "metrics": metrics, "init": init}, out)
    D.barrier()


if __name__ == "__main__":
    run(sys.argv[1], json.loads(sys.argv[2]))
