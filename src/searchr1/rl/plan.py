"""``searchr1 plan``: per-GPU memory of a training config under ddp, fsdp, fsdp+offload and LoRA.

Reads only the model's ``config.json`` (``--model-config PATH``, ``model.path`` as a local directory, or
the Hugging Face cache), never the weights. Per GPU it counts, in the training phase:

* policy parameters, gradients and AdamW's two moments (the parameter dtype; LoRA: frozen base, the
  adapter trains), the KL reference (parameters only; none under LoRA: the base is the reference),
  and the PPO critic (a copy of the policy's backbone, trained like it);
* activations of one micro-batch (``data.micro_batch_size`` rows of ``rollout.max_total_tokens``,
  or ``--seq-len``), with or without per-layer checkpointing;
* the logits of the log-prob computation: all response positions (``actor.logprob_chunk_size=0``)
  or one chunk of them (several float32 copies: logits, softmax, their gradient);
* FSDP's all-gathered units (the root's embeddings and two decoder layers, prefetch included) and,
  under fsdp, the unsharded copy of the policy the HF rollout generates on (resident on every rank);

and, in the rollout phase, the HF backend's KV cache for this GPU's rows. Sharded states divide
by ``--gpus`` under fsdp; fsdp+offload keeps them in CPU memory. The activation and logits
constants come from measured CPU peaks of tiny models (``tests/rl/test_plan.py``,
docs/training.md states the error); the GPU adds the CUDA context and allocator slack, so a plan
"fits" only below 90% of ``--gpu-memory``.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from searchr1.errors import ConfigError, UsageError
from searchr1.rl.config import TrainConfig, load_config

GiB = 2**30
STRATEGIES = ("ddp", "fsdp", "fsdp+offload")
LOGIT_COPIES = 5.5      # float32 (positions, vocab) tensors alive at the peak of the full path (measured)
CHUNK_COPIES = 4        # the same for one chunk (logits, softmax, recomputed logits and their gradient)
USABLE = 0.9            # share of the GPU a plan may fill (CUDA context, allocator fragmentation)


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers of a decoder-only LM (from its config.json)."""
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    qkv_bias: bool

    @classmethod
    def from_config(cls, c: dict, source: str = "config.json") -> ModelShape:
        c = c.get("text_config", c)
        missing = [k for k in ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
                               "vocab_size") if k not in c]
        if missing:
            raise ConfigError(f"{source} lacks {', '.join(missing)}; pass --model-config with a decoder LM's "
                              "config.json")
        heads = int(c["num_attention_heads"])
        return cls(hidden=int(c["hidden_size"]), layers=int(c["num_hidden_layers"]),
                   intermediate=int(c["intermediate_size"]), heads=heads,
                   kv_heads=int(c.get("num_key_value_heads") or heads),
                   head_dim=int(c.get("head_dim") or c["hidden_size"] // heads), vocab=int(c["vocab_size"]),
                   tied=bool(c.get("tie_word_embeddings", False)),
                   qkv_bias=bool(c.get("attention_bias", c.get("model_type") == "qwen2")))

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of the linear layers of one decoder layer (LoRA's "all-linear" targets)."""
        H, q, kv, inter = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim, self.intermediate
        return [(H, q), (H, kv), (H, kv), (q, H), (H, inter), (H, inter), (inter, H)]

    def layer_params(self) -> int:
        kv = self.kv_heads * self.head_dim
        bias = self.heads * self.head_dim + 2 * kv if self.qkv_bias else 0
        return sum(i * o for i, o in self.linear_shapes()) + bias + 2 * self.hidden

    def root_params(self) -> int:
        """Embeddings, final norm and (untied) lm_head: FSDP's root unit."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + self.hidden

    def params(self) -> int:
        return self.layers * self.layer_params() + self.root_params()

    def lora_params(self, rank: int) -> int:
        return self.layers * sum(rank * (i + o) for i, o in self.linear_shapes())

    def act_bytes_per_token_layer(self, nbytes: int) -> float:
        """Bytes one token leaves saved for backward in one decoder layer (SDPA attention, SwiGLU MLP).

        In the activation dtype: norm outputs, q/k/v (before and after RoPE), attention output,
        o_proj input, gate/up/act/product of the MLP; plus the two RMSNorms' float32 inputs."""
        kv = self.kv_heads * self.head_dim
        q = self.heads * self.head_dim
        return nbytes * (4 * self.hidden + 3 * q + 4 * kv + 4 * self.intermediate) + 8 * self.hidden


@dataclass(frozen=True)
class Workload:
    micro_batch: int
    seq_len: int
    rollout_rows: int       # rows this GPU generates at once (HF backend)
    param_bytes: int
    act_bytes: int
    checkpointing: bool
    chunk: int
    lora_rank: int
    reference: bool
    critic: bool

    @classmethod
    def from_config(cls, cfg: TrainConfig, gpus: int, seq_len: int | None = None) -> Workload:
        pb = 2 if cfg.model.dtype == "bfloat16" else 4
        ab = 2 if cfg.model.bf16_autocast else pb
        rows = -(-cfg.data.batch_size * cfg.algorithm.group_size // gpus)
        return cls(micro_batch=cfg.data.micro_batch_size, seq_len=seq_len or cfg.rollout.max_total_tokens,
                   rollout_rows=rows, param_bytes=pb, act_bytes=ab, checkpointing=cfg.model.gradient_checkpointing,
                   chunk=cfg.actor.logprob_chunk_size, lora_rank=cfg.model.lora_rank,
                   reference=cfg.algorithm.kl_placement != "none" and cfg.model.lora_rank == 0,
                   critic=cfg.algorithm.name == "ppo")


def _model_states(shape: ModelShape, w: Workload, shards: int, trainable: int) -> tuple[float, float, float]:
    """(parameters, gradients, AdamW) bytes of one model on one GPU; AdamW counts its two moments and the
    parameter-sized temporary of torch's for-each step (sqrt of the second moment)."""
    pb = w.param_bytes
    return shape.params() * pb / shards, trainable * pb / shards, 3 * trainable * pb / shards


def activations(shape: ModelShape, w: Workload, checkpointing: bool) -> float:
    """Saved activations of one micro-batch's forward plus one layer's activation gradients in the
    backward pass (bytes); with checkpointing only the layer inputs are kept and one layer at a time
    is recomputed."""
    tokens = w.micro_batch * w.seq_len
    per_layer = shape.act_bytes_per_token_layer(w.act_bytes)
    if checkpointing:
        return tokens * (shape.layers * shape.hidden * w.act_bytes + 2 * per_layer)
    return tokens * ((shape.layers + 1) * per_layer + 2 * shape.hidden * w.act_bytes)


def logits_bytes(shape: ModelShape, w: Workload, chunk: int) -> float:
    positions = w.micro_batch * w.seq_len
    if chunk > 0:   # + one (vocab, hidden) float32 weight gradient per chunk's backward before it accumulates
        return min(positions, chunk) * shape.vocab * 4 * CHUNK_COPIES + shape.vocab * shape.hidden * 4
    return positions * shape.vocab * 4 * LOGIT_COPIES


def estimate(shape: ModelShape, w: Workload, strategy: str, gpus: int, lora: bool = False) -> dict[str, float]:
    """Per-GPU bytes of each component under ``strategy`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    shards = 1 if strategy == "ddp" else gpus
    offload = strategy == "fsdp+offload"
    rank = w.lora_rank or 16
    trainable = shape.lora_params(rank) if lora else shape.params()
    p, g, o = _model_states(shape, w, shards, trainable)
    if lora:
        p += shape.lora_params(rank) * w.param_bytes / shards
    out = {"params": p, "grads": g, "optimizer": o,
           "reference": shape.params() * w.param_bytes / shards if (w.reference and not lora) else 0.0}
    cg = 0.0
    if w.critic:
        cp, cg, co = _model_states(shape, w, shards, shape.params())
        out["critic"] = cp + cg + co
    else:
        out["critic"] = 0.0
    cpu = 0.0
    if offload:
        cpu, cg = sum(out.values()), 0.0
        out = {k: 0.0 for k in out}
    out["activations"] = activations(shape, w, w.checkpointing)
    out["logits"] = logits_bytes(shape, w, w.chunk)
    out["fsdp_gather"] = 0.0 if strategy == "ddp" else (shape.root_params() + 2 * shape.layer_params()) * w.act_bytes
    # fsdp: the HF rollout generates on an unsharded copy of the policy, resident on every rank
    out["rollout_copy"] = 0.0 if strategy == "ddp" else shape.params() * w.param_bytes
    train = sum(out.values())
    kv = w.rollout_rows * w.seq_len * shape.layers * 2 * shape.kv_heads * shape.head_dim * w.act_bytes
    out["rollout_kv_cache"] = kv
    out["train_phase"] = train
    # generation: weights and optimizer states stay resident; gradients, activations and logits are freed
    out["rollout_phase"] = train - out["grads"] - cg - out["activations"] - out["logits"] + kv
    out["peak"] = max(train, out["rollout_phase"])
    out["cpu_offloaded"] = cpu
    return out


def advice(shape: ModelShape, w: Workload, gpus: int, budget: float) -> list[str]:
    """The first setting that fits, changing as little as possible: chunked log-probs, then activation
    checkpointing, then the strategy (ddp, fsdp, fsdp+offload), then LoRA, then smaller micro-batches."""
    steps: list[tuple[str, dict]] = []
    if w.chunk == 0:
        steps.append(("actor.logprob_chunk_size=1024", {"chunk": 1024}))
    if not w.checkpointing:
        steps.append(("model.gradient_checkpointing=true", {"checkpointing": True}))
    changes: list[str] = []
    cur = w
    for label, change in [("", {})] + steps:
        if label:
            changes.append(label)
            cur = replace(cur, **change)
        for lora in (False, True):
            for strategy in STRATEGIES:
                if estimate(shape, cur, strategy, gpus, lora)["peak"] <= budget:
                    return [_fits_line(strategy, lora, changes, cur)]
    mb = cur.micro_batch
    while mb > 1:
        mb //= 2
        cur = replace(cur, micro_batch=mb)
        for strategy in STRATEGIES:
            if estimate(shape, cur, strategy, gpus)["peak"] <= budget:
                return [_fits_line(strategy, False, changes + [f"data.micro_batch_size={mb}"], cur)]
    kv = estimate(shape, cur, "fsdp+offload", gpus)["rollout_phase"]
    why = (f"the rollout's KV cache alone needs {kv / GiB:.1f} GiB per GPU: lower data.batch_size or "
           "rollout.max_total_tokens" if kv > budget else "even one row per micro-batch does not fit")
    return [f"nothing fits on {gpus} GPU(s): {why}, or use more GPUs / a smaller model"]


def _fits_line(strategy: str, lora: bool, changes: list[str], w: Workload) -> str:
    setting = ["distributed.strategy=" + strategy.split("+")[0]]
    if strategy == "fsdp+offload":
        setting.append("distributed.cpu_offload=true")
    if lora:
        setting.append(f"model.lora_rank={w.lora_rank or 16}")
    what = " ".join(changes + setting)
    return ("fits as configured with " if not changes else "fits with ") + what


def find_model_config(path: str, explicit: str | None = None) -> Path:
    """config.json of ``path`` (explicit file, local directory, or Hugging Face cache snapshot)."""
    if explicit:
        p = Path(explicit)
        p = p / "config.json" if p.is_dir() else p
        if not p.is_file():
            raise ConfigError(f"--model-config {explicit}: no such file; pass a config.json or a model directory")
        return p
    local = Path(path) / "config.json"
    if local.is_file():
        return local
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface"))
               / "hub")
    snaps = sorted((hub / f"models--{path.replace('/', '--')}" / "snapshots").glob("*/config.json"))
    if snaps:
        return snaps[-1]
    raise ConfigError(f"no config.json for model.path={path!r} (not a local directory, not in the Hugging Face "
                      f"cache {hub}); pass --model-config PATH/config.json")


def plan(cfg: TrainConfig, shape: ModelShape, gpus: int, gpu_memory_gb: float,
         seq_len: int | None = None) -> tuple[dict[str, dict[str, float]], list[str], Workload]:
    """Per-strategy estimates (ddp, fsdp, fsdp+offload, lora = fsdp with LoRA) and advice."""
    if gpus < 1 or gpu_memory_gb <= 0:
        raise UsageError("--gpus must be >= 1 and --gpu-memory > 0 (GiB per GPU)")
    w = Workload.from_config(cfg, gpus, seq_len)
    rows = {s: estimate(shape, w, s, gpus) for s in STRATEGIES}
    rows["lora"] = estimate(shape, w, "fsdp", gpus, lora=True)
    return rows, advice(shape, w, gpus, USABLE * gpu_memory_gb * GiB), w


def format_plan(rows: dict[str, dict[str, float]], tips: list[str], shape: ModelShape, w: Workload,
                gpus: int, gpu_memory_gb: float, name: str) -> str:
    budget = USABLE * gpu_memory_gb * GiB
    keys = ["params", "grads", "optimizer", "reference", "critic", "activations", "logits", "fsdp_gather",
            "rollout_copy", "train_phase", "rollout_kv_cache", "rollout_phase", "peak", "cpu_offloaded"]
    lines = [f"{name}: {shape.params() / 1e9:.2f} B parameters, {shape.layers} layers, hidden {shape.hidden}, "
             f"vocab {shape.vocab}; {gpus} GPU(s) x {gpu_memory_gb:g} GiB (plans fill at most {USABLE:.0%})",
             f"micro-batch {w.micro_batch} x {w.seq_len} tokens, activation checkpointing "
             f"{'on' if w.checkpointing else 'off'}, logprob chunk {w.chunk or 'off'}, {w.rollout_rows} rollout "
             "rows per GPU", "", "GiB per GPU      " + "".join(f"{s:>14}" for s in rows)]
    for k in keys:
        lines.append(f"{k:<17}" + "".join(f"{rows[s][k] / GiB:>14.2f}" for s in rows))
    lines.append(f"{'fits':<17}" + "".join(f"{'yes' if rows[s]['peak'] <= budget else 'NO':>14}" for s in rows))
    lines += ["", *[f"- {t}" for t in tips]]
    return "\n".join(lines)


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="estimate per-GPU training memory of a config (ddp, fsdp, offload, LoRA)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML preset, e.g. configs/paper-ppo-qwen2.5-3b.yaml")
    p.add_argument("overrides", nargs="*", help="dotted overrides: data.micro_batch_size=4")
    p.add_argument("--gpus", type=int, default=8, help="GPUs in the job (default 8)")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU (default 80)")
    p.add_argument("--model-config", help="the model's config.json (default: from model.path)")
    p.add_argument("--seq-len", type=int, help="tokens per row (default rollout.max_total_tokens)")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON (bytes)")
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = load_config(args.config, list(args.overrides))
    src = find_model_config(cfg.model.path, args.model_config)
    try:
        shape = ModelShape.from_config(json.loads(src.read_text()), str(src))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{src} is not valid JSON ({e}); pass --model-config with the model's config.json") from e
    rows, tips, w = plan(cfg, shape, args.gpus, args.gpu_memory, args.seq_len)
    if args.json:
        print(json.dumps({"rows": rows, "advice": tips}, indent=1))
    else:
        print(format_plan(rows, tips, shape, w, args.gpus, args.gpu_memory, cfg.model.path))
    return 0
