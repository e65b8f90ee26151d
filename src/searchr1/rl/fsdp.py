"""Sharded training with PyTorch FSDP2 (``torch.distributed.fsdp.fully_shard``), ``distributed.strategy=fsdp``.

Each decoder layer is one FSDP unit and the model itself the root (embeddings, final norm, lm_head,
a critic's value head), as veRL's and TRL's FSDP paths do; parameters, gradients and AdamW state are
sharded over the ranks and a layer is all-gathered only while it runs. Gradients are reduce-scattered
as *sums* (divide factor 1): the learner's losses are already normalised by the global token count,
as under ddp, so both strategies give the single-process update.

Options: ``mixed_precision`` (bf16 compute and all-gathers, fp32 sharded parameters and gradient
reductions), ``cpu_offload`` (sharded parameters, gradients and optimizer state live in CPU memory;
the optimizer steps there). Activation checkpointing per decoder layer is ``model.gradient_checkpointing``
(transformers' own, enabled before sharding).

What needs the full model gathers it: :func:`full_state_dict` (rollout weights, the consolidated
``save_pretrained`` export of the policy), :class:`GatheredCritic` (the critic's, on rank 0 only). The sharded training state is saved and loaded with
``torch.distributed.checkpoint`` (:func:`save_sharded`, :func:`load_sharded`): every rank writes its
own shards, and a checkpoint loads at any world size, also into an unsharded single-process run.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_state_dict,
                                                     set_state_dict)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy, fully_shard
from torch.distributed.tensor import DTensor

from searchr1.errors import ConfigError
from searchr1.rl.checkpoint import CheckpointError
from searchr1.rl.config import TrainConfig


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks to shard one by one: modules whose class is in ``_no_split_modules``
    (transformers' list of blocks that must stay whole) of the model or any submodule."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__} declares no decoder layer class (_no_split_modules); "
                         "distributed.strategy=fsdp needs a transformers model, or use distributed.strategy=ddp")
    return layers


def shard_model(model: nn.Module, mixed_precision: bool = False, cpu_offload: bool = False) -> nn.Module:
    """``fully_shard`` each decoder layer, then ``model`` (the root); in place, returns ``model``.

    Needs an initialised process group (``torchrun``; gloo on CPU, NCCL on GPU)."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("distributed.strategy=fsdp needs torch.distributed: launch with torchrun "
                           "(torchrun --nproc_per_node N -m searchr1.cli train ...), or use distributed.strategy=ddp")
    kw = {"mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
          if mixed_precision else MixedPrecisionPolicy(),
          "offload_policy": CPUOffloadPolicy(pin_memory=torch.cuda.is_available()) if cpu_offload else OffloadPolicy()}
    for layer in decoder_layers(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)     # sums, like all_reduce_grads: losses carry the global norm
            m.set_force_sum_reduction_for_comms(True)   # plain SUM (gloo has no PREMUL_SUM)
    return model


def reshard(models) -> None:
    """Free the gathered parameters of every FSDP unit of ``models`` (after no-grad forwards, whose
    root units stay gathered): the next training forward then gathers and reduces as usual."""
    for model in models:
        for m in model.modules():
            if isinstance(m, FSDPModule):
                m.reshard()


def is_sharded(model: nn.Module) -> bool:
    return isinstance(model, FSDPModule)


def local_value(x: torch.Tensor) -> torch.Tensor:
    """A plain tensor of ``x`` (a DTensor's full value, gathered; other tensors unchanged)."""
    return x.full_tensor() if isinstance(x, DTensor) else x


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict as plain tensors on the model's device, on every rank (an all-gather
    per tensor; torch's cpu_offload option would leave ranks other than 0 empty)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


class GatheredCritic:
    """A sharded critic's full weights, gathered to rank 0's CPU memory for the consolidated export
    (collective: every rank builds one; the other ranks hold nothing). ``save_pretrained`` writes
    what :meth:`ValueModel.save_pretrained <searchr1.rl.critic.ValueModel.save_pretrained>` writes."""

    def __init__(self, critic: nn.Module):
        self.critic = critic
        self.state = get_model_state_dict(critic, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def save_pretrained(self, path: str | Path) -> None:
        if not self.state:
            raise RuntimeError("GatheredCritic.save_pretrained runs on rank 0 only (the other ranks hold no weights)")
        self.critic.save_pretrained(path, state_dict=self.state)


@torch.no_grad()
def copy_full_weights(src: nn.Module, dst: nn.Module) -> None:
    """Load ``src``'s (sharded) weights into the unsharded ``dst`` (the rollout copy), in place."""
    missing, unexpected = dst.load_state_dict(full_state_dict(src), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise RuntimeError(f"rollout copy and policy differ: missing {missing[:3]}, unexpected {unexpected[:3]}")


def rollout_copy(cfg: TrainConfig, policy, world_size: int):
    """Under ``distributed.strategy=fsdp``: an unsharded copy of ``policy`` for generation and export
    (None otherwise). Every rank must run the same number of sharded forwards, so the batch must split
    evenly over the ranks."""
    if cfg.distributed.strategy != "fsdp":
        return None
    if cfg.recipe != "rl":
        raise ConfigError(f"distributed.strategy=fsdp trains recipe=rl only (PPO/GRPO/RLOO/REINFORCE); run "
                          f"recipe={cfg.recipe} with distributed.strategy=ddp")
    if cfg.data.batch_size % world_size:
        raise ConfigError(f"distributed.strategy=fsdp: data.batch_size={cfg.data.batch_size} does not split "
                          f"evenly over {world_size} ranks (every rank must run the same passes); use a multiple")
    return copy.deepcopy(policy)


def _states(models: dict[str, tuple[nn.Module, torch.optim.Optimizer]]) -> dict:
    out = {}
    for name, (model, opt) in models.items():
        out[name], out[name + "_optim"] = get_state_dict(model, opt)
    return out


def save_sharded(directory: str | Path, models: dict[str, tuple[nn.Module, torch.optim.Optimizer]]) -> None:
    """Every rank writes its shards of each (model, optimizer) to ``directory`` (collective)."""
    dcp.save(_states(models), checkpoint_id=str(directory))


def load_sharded(directory: str | Path, models: dict[str, tuple[nn.Module, torch.optim.Optimizer]]) -> None:
    """Load :func:`save_sharded`'s ``directory`` into ``models`` in place, at this run's world size
    (sharded or not); an unreadable directory raises :class:`~searchr1.rl.checkpoint.CheckpointError`."""
    state = _states(models)
    try:
        dcp.load(state, checkpoint_id=str(directory))
    except (CheckpointException, OSError, RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{directory} is unreadable ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    for name, (model, opt) in models.items():
        set_state_dict(model, opt, model_state_dict=state[name], optim_state_dict=state[name + "_optim"])
