"""The PPO critic: a value head on a copy of a causal-LM backbone.

Choice. The critic is a *separate* model (its own copy of the policy's backbone, or
``model.critic_path``) with a linear head ``hidden -> 1`` initialised to zero, as in
Search-R1/veRL where the critic starts from the same checkpoint as the actor. A
shared trunk would couple the two learning rates (paper: 1e-6 vs 1e-5) and let value
gradients move the policy. We do not use ``AutoModelForTokenClassification``
because custom causal LMs registered only with ``AutoModelForCausalLM`` (like the
demo's tiny model) have no such class; the backbone is reached through the standard
``base_model`` attribute, or, for models without a separate trunk, through
``output_hidden_states=True`` — both are parts of the standard interface.

Saving: ``critic/`` holds the backbone via ``save_pretrained`` (a plain causal LM
directory) plus ``value_head.safetensors``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModelForCausalLM

from searchr1.rl.batch import Batch, autocast_ctx

HEAD_FILE = "value_head.safetensors"


class ValueModel(nn.Module):
    """V(s_t) for every position. ``lm``: a causal LM; ``head``: Linear(hidden, 1)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        hidden = getattr(lm.config, "hidden_size", None) or getattr(lm.config, "n_embd", None)
        if hidden is None:
            raise ValueError(f"{type(lm).__name__}.config has no hidden_size; set model.critic_path to a model that does")
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.head.to(next(lm.parameters()).dtype)

    @classmethod
    def from_policy(cls, policy: nn.Module, init: str = "policy") -> ValueModel:
        """A critic on ``policy``'s architecture: its weights copied (``init="policy"``) or freshly
        initialised from its config (``"scratch"``; the policy's dtype)."""
        if init == "policy":
            return cls(copy.deepcopy(policy))
        if init != "scratch":
            raise ValueError(f"critic init={init!r}: use policy or scratch")
        dtype = next(policy.parameters()).dtype
        return cls(AutoModelForCausalLM.from_config(policy.config, dtype=dtype))

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        trunk = getattr(self.lm, "base_model", self.lm)
        if trunk is not self.lm:
            out = trunk(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
            return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        out = self.lm(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
        return out.hidden_states[-1]

    def forward(self, batch: Batch) -> Tensor:
        """Values of the states before each response token: (B, R), float32."""
        h = self.hidden_states(batch.input_ids, batch.attention_mask)      # (B, L, H)
        v = self.head(h.to(self.head.weight.dtype)).squeeze(-1).float()    # (B, L)
        return v.gather(1, batch.resp_index)

    def save_pretrained(self, path: str | Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """The backbone as a plain causal-LM directory plus the value head. state_dict: this model's
        full state (``lm.*``, ``head.*``) to write instead of the parameters' own (a sharded critic's
        gathered weights)."""
        path = Path(path)
        lm_state = head_state = None
        if state_dict is not None:
            lm_state = {k[len("lm."):]: v for k, v in state_dict.items() if k.startswith("lm.")}
            head_state = {k[len("head."):]: v for k, v in state_dict.items() if k.startswith("head.")}
        self.lm.save_pretrained(path, safe_serialization=True, state_dict=lm_state)
        head_state = head_state if head_state is not None else self.head.state_dict()
        save_file({k: v.detach().cpu().contiguous() for k, v in head_state.items()}, str(path / HEAD_FILE))

    def load_head(self, path: str | Path) -> None:
        f = Path(path) / HEAD_FILE
        if not f.is_file():
            raise FileNotFoundError(f"{f} missing: {path} is not a critic checkpoint written by ValueModel.save_pretrained")
        self.head.load_state_dict(load_file(str(f)))


@torch.no_grad()
def forward_values(critic: ValueModel, batch: Batch, micro_batch_size: int, autocast: bool = False) -> Tensor:
    """Critic values for every row, in micro-batches: (B, R) float32, 0 outside the response."""
    B, R = batch.responses.shape
    out = torch.zeros(B, R)
    device = next(critic.parameters()).device
    for s in range(0, B, micro_batch_size):
        mb = batch.select(slice(s, s + micro_batch_size)).to(device)
        with autocast_ctx(device, autocast):
            v = critic(mb)
        out[s:s + micro_batch_size, :v.shape[1]] = v.float().cpu()
    return out * batch.valid_mask
