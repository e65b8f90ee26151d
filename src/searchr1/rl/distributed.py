"""Data parallelism on torch.distributed (launched by ``torchrun`` or ``accelerate launch``).

Each rank rolls out its own shard of the step's questions (a question's G samples
stay on one rank, so GRPO groups are complete), computes losses normalised by the
*global* token / row count, and gradients are summed with ``all_reduce`` — the
update equals the single-process update on the whole batch. Rank 0 logs and writes
checkpoints. gloo on CPU, NCCL on GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto", group_of_one: bool = False) -> DistInfo:
    """Join the process group when launched with WORLD_SIZE > 1 (torchrun sets it). ``group_of_one``: a plain
    single process gets a one-rank group of its own (FSDP needs a group even on one GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_nccl = torch.cuda.is_available() and device != "cpu"
    if world <= 1:
        if group_of_one and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_nccl else "gloo", store=dist.HashStore(), rank=0,
                                    world_size=1)
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.set_device(local)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


def current() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def shard(items: list, info: DistInfo) -> list:
    """This rank's contiguous share of ``items`` (sizes differ by at most one)."""
    n = len(items)
    lo = n * info.rank // info.world_size
    hi = n * (info.rank + 1) // info.world_size
    return items[lo:hi]


def all_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (identity without a process group). Works on a copy."""
    x = x.detach().clone().float()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dev = x.device
        if dist.get_backend() == "nccl":
            x = x.cuda()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x.to(dev)
    return x


def all_reduce_grads(params) -> None:
    """Sum the gradients of ``params`` over ranks, in place (one flat buffer per dtype)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    off = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[off:off + n].view_as(g))
        off += n


def global_masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """masked_whiten with mean/variance over all ranks' masked entries. (B, T) -> (B, T)."""
    m = mask.to(torch.float32)
    stats = all_sum(torch.stack([(x * m).sum(), (x * x * m).sum(), m.sum()]))
    s, ss, n = stats.tolist()
    n = max(n, 1.0)
    mean = s / n
    var = max(ss / n - mean * mean, 0.0) * (n / (n - 1) if n > 1 else 1.0)
    return (x - mean) * (1.0 / (var + eps) ** 0.5) * m


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
