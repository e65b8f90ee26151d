"""Two gloo processes on CPU give the same update as one process on the whole batch."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from searchr1.rollout.types import Trajectory


def _trajectories() -> list[Trajectory]:
    g = torch.Generator().manual_seed(7)
    out = []
    for i in range(8):
        P, R = 3 + i % 3, 5 + (i * 3) % 7
        mask = [1] * R
        if i % 2:
            mask[2:4] = [0, 0]  # an injected observation
        out.append(Trajectory(prompt_ids=torch.randint(0, 250, (P,), generator=g).tolist(),
                              response_ids=torch.randint(0, 250, (R,), generator=g).tolist(),
                              response_mask=mask, group_id=i // 2))
    return out


SCORES = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.0]


def _update(tiny_dir, trajs, scores, algo: str):
    from transformers import AutoModelForCausalLM

    from searchr1.rl.batch import collate
    from searchr1.rl.config import config_from_dict
    from searchr1.rl.learner import Learner

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    cfg = config_from_dict({}, [f"algorithm.name={algo}", "algorithm.group_size=2", "algorithm.kl_coef=0.05",
                                "optimizer.actor_lr=0.01", "optimizer.actor_warmup_ratio=0",
                                "optimizer.critic_warmup_ratio=0", "data.batch_size=4", "data.mini_batch_size=4",
                                "data.micro_batch_size=3", "total_steps=1", "device=cpu"])
    learner = Learner(cfg, model, torch.device("cpu"))
    batch = collate(trajs, scores)
    learner.prepare(batch)
    learner.update(batch, seed=0)
    return {"weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "moments": _first_moments(learner)}


def _first_moments(learner) -> dict:
    """AdamW's first moment per parameter after its one step: (1 - beta1) * the (all-reduced) gradient."""
    out = {}
    for prefix, module, opt in (("policy.", learner.policy, learner.opt), ("critic.", learner.critic, learner.copt)):
        if module is None:
            continue
        for name, p in module.named_parameters():
            state = opt.state[p]
            assert float(state["step"]) == 1.0, name
            out[prefix + name] = state["exp_avg"].detach().clone()
    return out


ALGOS = ("grpo", "ppo")


def _worker(rank, world, port, tiny_dir, out_file):
    import torch.distributed as dist

    from searchr1.rl.distributed import current, shard

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        trajs, scores = _trajectories(), SCORES
        groups = shard(sorted({t.group_id for t in trajs}), current())   # whole GRPO groups per rank
        mine = [i for i, t in enumerate(trajs) if t.group_id in groups]
        states = {a: _update(tiny_dir, [trajs[i] for i in mine], [scores[i] for i in mine], a) for a in ALGOS}
        if rank == 0:
            torch.save(states, out_file)
        dist.barrier()   # neither rank tears its connections down while the other still uses them
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tiny_dir, tmp_path):
    """GRPO (KL loss, group advantages) and PPO (critic, GAE, globally whitened advantages)."""
    out = tmp_path / "rank0.pt"
    mp.start_processes(_worker, args=(2, _free_port(), str(tiny_dir), str(out)), nprocs=2,
                       join=True, start_method="spawn")
    both = torch.load(out, weights_only=True)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_dir).state_dict()
    for algo in ALGOS:
        single = _update(tiny_dir, _trajectories(), SCORES, algo)
        # the gradients each optimizer received agree (the weights after one Adam step are no fair
        # comparison: its first step is about lr * sign(grad), so rounding in a gradient element near eps
        # moves that weight by up to lr; a 7e-6 weight difference from a 1e-9 gradient one was seen)
        assert single["moments"].keys() == both[algo]["moments"].keys()
        for k, v in single["moments"].items():
            scale = float(v.abs().max())
            torch.testing.assert_close(both[algo]["moments"][k], v, atol=1e-5 * max(scale, 1e-12), rtol=1e-4,
                                       msg=lambda m: f"{algo} {k}: {m}")
        moved = 0
        for k, v in single["weights"].items():
            assert float((both[algo]["weights"][k] - v).abs().max()) < 5e-3, f"{algo} {k}"  # << one step, lr 0.01
            moved += int(not torch.equal(v, base[k]))
        assert moved > 0  # the update really moved the weights
        assert sum(float(v.abs().max()) > 0 for k, v in single["moments"].items() if k.startswith("policy.")) \
            == sum(1 for k in single["moments"] if k.startswith("policy."))   # every policy weight had a gradient
