"""Training configuration: one dataclass per component, composed in :class:`TrainConfig`.

Load with :func:`load_config` (YAML file + dotted overrides such as
``algorithm.name=grpo rollout.max_turns=2``). Every field is documented in place;
``__post_init__`` rejects bad values with a message that says how to fix them.

Batch sizes count *questions*; with ``algorithm.group_size = G`` a step generates
``data.batch_size * G`` trajectories and a mini-batch holds
``data.mini_batch_size * G`` of them (as veRL counts them). ``micro_batch_size``
counts trajectories per forward pass (memory), independent of the other two.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from searchr1.errors import ConfigError
from searchr1.rewards.score import KINDS as REWARD_KINDS
from searchr1.rl.config_tree import _build, _merge, parse_overrides, read_yaml
from searchr1.rl.config_tree import config_to_dict  # noqa: F401  (callers import it from here)
from searchr1.rl.core_algos import AGG_MODES, KL_KINDS
from searchr1.rollout.backends.vllm import INSTALL_HINT, VLLMConfig, vllm_available
from searchr1.rollout.config import RolloutConfig
from searchr1.search.cache import SearchCacheConfig
from searchr1.search.web import WebConfig, parse_backend

ALGORITHMS = ("ppo", "grpo", "rloo", "reinforce")
RECIPES = ALGORITHMS + ("sft", "rejection-sampling")


@dataclass
class ModelConfig:
    path: str = ""
    """Hugging Face model name or local directory of the policy (any causal LM)."""
    tokenizer: str | None = None
    """Tokenizer name/dir; None = same as ``path``."""
    trust_remote_code: bool = False
    """Allow model code from the hub repo (only for repos you trust)."""
    dtype: str = "float32"
    """Parameter dtype: float32 | bfloat16 (bf16 weights halve memory; float32 is exact on CPU)."""
    bf16_autocast: bool = False
    """Run forward passes under torch.autocast(bfloat16) on CPU or GPU (master weights stay in ``dtype``)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    lora_rank: int = 0
    """0 = full fine-tuning; > 0 trains a LoRA adapter (peft) of this rank and uses the base weights as the reference."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input."""
    lora_target_modules: str = "all-linear"
    """peft ``target_modules``: "all-linear" or comma-separated module names (e.g. "q_proj,v_proj")."""
    critic_path: str | None = None
    """PPO critic backbone; None = a copy of the policy (value head on top, see critic.py)."""
    share_prompt: bool = True
    """Teacher-forced passes (training forward, reference and old log-probs) run each distinct prompt once
    and put its KV cache under all rows that share it (a GRPO group): same log-probs and gradients as
    the full forward, ~(G-1)/G of the prompt compute saved. The full forward instead, with a log line,
    when no prompt repeats (``algorithm.group_size=1``), for models without a KV cache / ``position_ids``
    in ``forward`` and, for the training pass, under gradient checkpointing (``rl/batch.py:
    forward_mode``). False = always the full forward."""

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"model.dtype={self.dtype!r}: use float32 or bfloat16")
        if self.lora_rank < 0:
            raise ValueError(f"model.lora_rank={self.lora_rank}: use 0 (full fine-tuning) or a positive rank")


ROLLOUT_BACKENDS = ("hf", "vllm")


@dataclass
class TrainRolloutConfig(RolloutConfig):
    """The rollout engine's settings (:class:`RolloutConfig`) plus which backend decodes during training."""

    backend: str = "hf"
    """hf: the project's own batched decoding loop on the policy itself (no extra install) | vllm: a vLLM
    engine (``make install-vllm`` on CPU, ``pip install 'searchr1[vllm]'`` on GPU) kept on the policy's
    weights by a push after every update (docs/vllm.md)."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """Engine settings, used when ``backend=vllm``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backend not in ROLLOUT_BACKENDS:
            raise ValueError(f"rollout.backend={self.backend!r}: use one of {', '.join(ROLLOUT_BACKENDS)}")


@dataclass
class ActorConfig:
    logprob_chunk_size: int = 0
    """0 = log-probs and entropy from the full (micro-batch, length, vocab) logits; N > 0 = from the last
    hidden states, projected to the vocabulary N positions at a time (forward and backward), so memory
    does not grow with vocab x length: same values and gradients (rl/lm_head.py). Models whose logits
    are not lm_head(hidden) (soft-capping, copy heads) keep the full logits, with a log line."""

    def __post_init__(self):
        if self.logprob_chunk_size < 0:
            raise ValueError(f"actor.logprob_chunk_size={self.logprob_chunk_size}: use 0 (full logits) or a "
                             "positive number of positions per chunk, e.g. 1024")


CRITIC_INITS = ("policy", "scratch")


@dataclass
class CriticConfig:
    """The PPO critic's training schedule (its learning rate is ``optimizer.critic_lr``)."""

    warmup_steps: int = 0
    """The first N training steps update only the critic (the policy still samples the rollouts, its
    weights and optimizer stay untouched): the value estimates get a head start before their advantages
    move the policy (veRL's ``trainer.critic_warmup``). Those steps' rollouts count toward the budget."""
    epochs: int | None = None
    """Passes of the critic over each rollout batch; None = ``algorithm.ppo_epochs`` (the actor's).
    More passes fit the values to each batch at no rollout cost."""
    init: str = "policy"
    """policy: the critic's backbone is a copy of the policy's weights (Search-R1/veRL: the actor's
    checkpoint) under a zero-initialised value head | scratch: the same architecture, randomly initialised
    (``AutoModelForCausalLM.from_config``)."""

    def __post_init__(self):
        if self.init not in CRITIC_INITS:
            raise ValueError(f"critic.init={self.init!r}: use one of {', '.join(CRITIC_INITS)}")
        if self.warmup_steps < 0:
            raise ValueError(f"critic.warmup_steps={self.warmup_steps}: use 0 (off) or a number of steps")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"critic.epochs={self.epochs}: use a positive number of passes, or null for "
                             "algorithm.ppo_epochs")


@dataclass
class DistributedConfig:
    strategy: str = "ddp"
    """ddp: every rank holds the whole policy, reference, critic and optimizer state (gradients summed
    with all_reduce); fsdp: FSDP2 shards them over the ranks per decoder layer (rl/fsdp.py; launch with
    torchrun). Both give the single-process update on the global batch."""
    mixed_precision: bool = False
    """fsdp: bf16 compute and all-gathers, fp32 sharded parameters and gradient reductions."""
    cpu_offload: bool = False
    """fsdp: keep the sharded parameters, gradients and optimizer state in CPU memory."""

    def __post_init__(self):
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"distributed.strategy={self.strategy!r}: use ddp or fsdp")
        if self.strategy == "ddp" and (self.mixed_precision or self.cpu_offload):
            raise ValueError("distributed.mixed_precision / distributed.cpu_offload apply to FSDP only: set "
                             "distributed.strategy=fsdp (under ddp use model.bf16_autocast)")


@dataclass
class AlgorithmConfig:
    name: str = "grpo"
    """ppo (GAE with a critic) | grpo (group-relative) | rloo (leave-one-out) | reinforce (batch-mean baseline)."""
    group_size: int = 5
    """Samples per question (G). GRPO/RLOO need >= 2; PPO normally 1."""
    norm_adv_by_std: bool = True
    """GRPO: divide by the group std (False = Dr. GRPO, mean-centred only)."""
    gamma: float = 1.0
    """PPO discount (paper: 1.0)."""
    lam: float = 1.0
    """PPO GAE lambda (paper: 1.0)."""
    whiten_advantages: bool = True
    """PPO: whiten GAE advantages over the batch's policy tokens."""
    clip_eps: float = 0.2
    """PPO/GRPO ratio clip (lower side, and upper unless clip_eps_high is set)."""
    clip_eps_high: float | None = None
    """Upper clip (DAPO "clip-higher"); None = clip_eps."""
    dual_clip_c: float | None = None
    """Dual-clip constant (> 1, e.g. 3) for negative advantages; None = off."""
    tis_cap: float = 0.0
    """Truncated importance sampling when a separate engine sampled (rollout.backend=vllm): each policy token's
    loss is weighted by min(pi_trainer_old / pi_engine, tis_cap), correcting the engine/trainer mismatch;
    0 = off."""
    value_clip: float | None = 0.5
    """PPO value-loss clip range; None = unclipped."""
    loss_agg_mode: str = "token-mean"
    """token-mean | seq-mean-token-mean | seq-mean-token-sum."""
    kl_estimator: str = "low_var_kl"
    """kl (k1) | abs | mse (k2) | low_var_kl (k3)."""
    kl_coef: float = 0.001
    """KL coefficient (initial value for the adaptive controller). 0 disables the reference model."""
    kl_in: str = "auto"
    """Where the KL goes: loss | reward | auto (reward for ppo, loss otherwise)."""
    kl_controller: str = "fixed"
    """fixed | adaptive (Ziegler et al.; only for kl_in=reward)."""
    kl_target: float = 0.1
    """Adaptive controller target KL per token."""
    kl_horizon: int = 10000
    """Adaptive controller horizon (trajectories)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient (policy tokens only)."""
    mask_retrieved: bool = True
    """Retrieved/injected tokens get no loss, entropy or KL. False = the paper's no-mask ablation."""
    ppo_epochs: int = 1
    """Passes over each rollout batch."""
    reward: str = "em"
    """Outcome reward kind passed to searchr1.rewards.compute_score: em | subem | f1 | format."""
    skip_zero_adv: bool = True
    """grpo/rloo/reinforce: when every advantage of the batch is zero (e.g. every group scored
    all-0 or all-1) there is no learning signal, so skip the actor's optimizer step instead of
    letting Adam rescale the tiny KL gradient into a full learning-rate step (metric
    ``actor/skipped_zero_adv``). False = always step (the KL term alone then moves the policy)."""

    def __post_init__(self):
        if self.name not in ALGORITHMS:
            raise ValueError(f"algorithm.name={self.name!r}: use one of {', '.join(ALGORITHMS)} "
                             "(sft / rejection-sampling are recipes: pass --recipe)")
        if self.name in ("grpo", "rloo") and self.group_size < 2:
            raise ValueError(f"{self.name} needs algorithm.group_size >= 2 (advantages are relative to the group); "
                             "set algorithm.group_size=5 or use algorithm.name=ppo")
        if self.group_size < 1:
            raise ValueError("algorithm.group_size must be >= 1")
        if self.loss_agg_mode not in AGG_MODES:
            raise ValueError(f"algorithm.loss_agg_mode={self.loss_agg_mode!r}: use one of {', '.join(AGG_MODES)}")
        if self.kl_estimator not in KL_KINDS:
            raise ValueError(f"algorithm.kl_estimator={self.kl_estimator!r}: use one of {', '.join(KL_KINDS)}")
        if self.kl_in not in ("auto", "loss", "reward"):
            raise ValueError(f"algorithm.kl_in={self.kl_in!r}: use auto, loss or reward")
        if self.kl_controller not in ("fixed", "adaptive"):
            raise ValueError(f"algorithm.kl_controller={self.kl_controller!r}: use fixed or adaptive")
        if self.kl_controller == "adaptive" and self.kl_placement != "reward":
            raise ValueError("the adaptive KL controller shapes the reward: set algorithm.kl_in=reward "
                             "(or algorithm.name=ppo) or use algorithm.kl_controller=fixed")
        if self.kl_coef < 0 or self.entropy_coef < 0:
            raise ValueError("algorithm.kl_coef and algorithm.entropy_coef must be >= 0")
        if not 0 < self.clip_eps < 1:
            raise ValueError(f"algorithm.clip_eps={self.clip_eps}: use a value in (0, 1), e.g. 0.2")
        if self.tis_cap < 0:
            raise ValueError(f"algorithm.tis_cap={self.tis_cap}: use 0 (off) or a cap such as 2")
        if self.dual_clip_c is not None and self.dual_clip_c <= 1:
            raise ValueError(f"algorithm.dual_clip_c={self.dual_clip_c}: must be > 1 (e.g. 3) or null")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ValueError("algorithm.gamma and algorithm.lam must lie in [0, 1] (paper: 1.0 / 1.0)")
        if self.ppo_epochs < 1:
            raise ValueError("algorithm.ppo_epochs must be >= 1")
        if self.reward not in REWARD_KINDS:
            raise ValueError(f"algorithm.reward={self.reward!r}: use one of {', '.join(REWARD_KINDS)}")

    @property
    def kl_placement(self) -> str:
        """'reward' | 'loss' | 'none' after resolving ``auto`` and a zero coefficient."""
        if self.kl_coef == 0:
            return "none"
        if self.kl_in == "auto":
            return "reward" if self.name == "ppo" else "loss"
        return self.kl_in


@dataclass
class OptimizerConfig:
    actor_lr: float = 1e-6
    """Policy learning rate (paper: 1e-6)."""
    critic_lr: float = 1e-5
    """Critic learning rate (paper: 1e-5)."""
    actor_warmup_ratio: float = 0.285
    """Share of total steps with linear warmup for the policy (Search-R1: 0.285)."""
    critic_warmup_ratio: float = 0.015
    """Share of total steps with linear warmup for the critic (Search-R1: 0.015)."""
    schedule: str = "constant"
    """LR after warmup: constant | cosine | linear (decay to min_lr_ratio)."""
    min_lr_ratio: float = 0.0
    """Final LR / peak LR for cosine and linear."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (<= 0 disables clipping)."""
    fused: bool = False
    """torch's fused AdamW (CPU and CUDA): one kernel over all parameters instead of a loop over them
    (docs/benchmarks.md). The same update up to float rounding: off by default so seeded runs reproduce
    earlier results exactly."""

    def __post_init__(self):
        if self.actor_lr <= 0 or self.critic_lr <= 0:
            raise ValueError("optimizer.actor_lr and optimizer.critic_lr must be > 0")
        for name in ("actor_warmup_ratio", "critic_warmup_ratio", "min_lr_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"optimizer.{name}={getattr(self, name)}: use a value in [0, 1]")
        if self.schedule not in ("constant", "cosine", "linear"):
            raise ValueError(f"optimizer.schedule={self.schedule!r}: use constant, cosine or linear")
        if len(self.betas) != 2:
            raise ValueError("optimizer.betas needs two values, e.g. [0.9, 0.999]")


@dataclass
class DataConfig:
    train_file: str = ""
    """QA training file (anything searchr1.data.qa.load_qa reads: FlashRAG jsonl, Search-R1 parquet)."""
    val_file: str = ""
    """Held-out QA file for validation ("" = no validation)."""
    max_train_examples: int = 0
    """Use only the first N training questions (0 = all)."""
    max_val_examples: int = 64
    """Questions per validation run (0 = all)."""
    batch_size: int = 512
    """Questions per step (paper: 512)."""
    mini_batch_size: int = 256
    """Questions per optimizer update (paper: 256); batch_size / mini_batch_size updates per epoch."""
    micro_batch_size: int = 8
    """Trajectories per forward/backward pass (gradient accumulation; memory only)."""
    shuffle: bool = True
    """Reshuffle the questions each epoch (seeded)."""
    prompt_template: str = "search-r1"
    """Prompt template name (searchr1.data.prompts) or a raw template with a {question} slot."""
    retriever_url: str = ""
    """Retrieval server URL (searchr1 serve); "" = use index_dir in-process."""
    index_dir: str = ""
    """Local index directory loaded in-process when retriever_url is empty."""
    retriever_token: str = ""
    """Bearer token for a server started with ``searchr1 serve --token``; "" = the SEARCHR1_TOKEN
    environment variable when set (preferred: the environment keeps it out of shell history).
    Never written to config.json or the logs."""
    search_failure_policy: str = "abort"
    """abort: stop the run (exit 1) in a retrieval outage (see the two limits below); record: only count
    failed searches (``search/failures_total``), each one still an observation the policy reads."""
    max_consecutive_search_failures: int = 10
    """abort after this many failed search calls in a row."""
    max_search_failure_rate: float = 0.5
    """abort when more than this share of search calls failed (checked once 20 calls were made)."""

    def __post_init__(self):
        if self.search_failure_policy not in ("abort", "record"):
            raise ValueError(f"data.search_failure_policy={self.search_failure_policy!r}: use abort or record")
        if self.max_consecutive_search_failures < 1:
            raise ValueError(f"data.max_consecutive_search_failures={self.max_consecutive_search_failures}: "
                             "use a value >= 1")
        if not 0 <= self.max_search_failure_rate <= 1:
            raise ValueError(f"data.max_search_failure_rate={self.max_search_failure_rate}: use a value in [0, 1]")
        if min(self.batch_size, self.mini_batch_size, self.micro_batch_size) < 1:
            raise ValueError("data.batch_size, data.mini_batch_size and data.micro_batch_size must be >= 1")
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"data.batch_size={self.batch_size} is not a multiple of data.mini_batch_size="
                             f"{self.mini_batch_size}; pick sizes such that mini-batches split the batch evenly")


@dataclass
class SearchConfig:
    backend: str = ""
    """A web search API: web:serper, web:serpapi, web:brave or web:searxng (keys from SERPER_API_KEY,
    SERPAPI_API_KEY, BRAVE_API_KEY; see docs/retrieval.md); empty = data.retriever_url / data.index_dir."""
    web: WebConfig = field(default_factory=WebConfig)
    """Web backend settings (base_url, qps, retries, params ...); the provider is the one ``backend`` names."""
    cache: SearchCacheConfig = field(default_factory=SearchCacheConfig)
    """Persistent search cache in front of the retriever: ``{path, mode}``, mode off | rw | record | replay
    (replay makes a run's searches re-runnable for free and fails on a query it never recorded)."""

    def __post_init__(self):
        if self.backend:
            provider = parse_backend(self.backend)  # ConfigError naming the valid backends
            if self.web.provider not in (provider, WebConfig.provider):
                raise ConfigError(f"search.web.provider={self.web.provider} contradicts search.backend={self.backend}; "
                                  "leave search.web.provider out (the backend names the provider).")
            self.web = dataclasses.replace(self.web, provider=provider)  # config.json shows the provider used


@dataclass
class GuardConfig:
    entropy_min: float | None = None
    """Warn (or stop) when the policy entropy falls below this (collapse); None = no check."""
    entropy_max: float | None = None
    """Warn (or stop) when the policy entropy rises above this (divergence); None = no check."""
    kl_max: float | None = None
    """Warn (or stop) when the KL to the reference exceeds this; None = no check."""
    early_stop: bool = False
    """Stop training (after saving a checkpoint) when a band is left."""
    max_skipped_updates: int = 10
    """Abort after this many consecutive non-finite updates (each one is skipped and counted)."""
    max_same_reward_groups: float | None = None
    """Warn (or stop) when more than this share of groups had one reward for all samples; None = no check."""
    min_rewarded_logp: float | None = None
    """Warn (or stop) when the mean token log-prob of rewarded responses falls below this (likelihood
    displacement, rl/diagnostics.py); None = no check."""
    max_invalid_rate: float | None = None
    """Warn (or stop) when the invalid-action rate exceeds this; None = no check."""
    max_zero_adv_steps: int = 5
    """grpo/rloo/reinforce: stop with a message when each of the first N steps had no learning signal
    (every group rewarded all-0 or all-1), instead of skipping updates until total_steps. 0 = off."""

    def __post_init__(self):
        if self.max_zero_adv_steps < 0 or self.max_skipped_updates < 1:
            raise ValueError("guards.max_zero_adv_steps must be >= 0 and guards.max_skipped_updates >= 1")


@dataclass
class LoggingConfig:
    jsonl: bool = True
    """Write metrics.jsonl in the output dir (always recommended)."""
    tensorboard: bool = False
    """Also write TensorBoard events (needs tensorboard installed)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs wandb installed and a login)."""
    wandb_project: str = "searchr1"
    """wandb project name."""
    progress_bar: bool = True
    """Show a tqdm bar with step, reward, EM and tokens/s."""
    plot: bool = True
    """Write curves.png (reward, EM, KL, entropy) at the end."""
    val_every: int = 0
    """Validate every N steps (0 = only at the end when a val_file is given)."""


@dataclass
class CheckpointConfig:
    every: int = 0
    """Save every N steps (0 = only at the end)."""
    keep_last: int = 2
    """Keep the most recent k checkpoints (>= 1)."""
    save_critic: bool = True
    """Also save the PPO critic."""

    def __post_init__(self):
        if self.keep_last < 1:
            raise ValueError("checkpoint.keep_last must be >= 1 (the latest checkpoint is needed to resume)")


@dataclass
class SFTConfig:
    train_file: str = ""
    """SFT data: JSONL of {"prompt", "response"} or of trajectories (prompt_ids/response_ids/response_mask)."""
    epochs: int = 1
    """Passes over the SFT data."""
    lr: float = 1e-5
    """SFT learning rate."""
    rs_rounds: int = 1
    """Rejection sampling: rounds of sample G -> keep correct -> SFT."""
    rs_min_score: float = 1.0
    """Rejection sampling keeps trajectories whose reward >= this."""


@dataclass
class ColdStartConfig:
    mode: str = "never"
    """auto: probe the policy's format validity and fine-tune it on scripted-teacher trajectories first when
    it is below ``min_format`` (rl/cold_start.py); always: fine-tune without probing; never: RL from the policy."""
    probe_questions: int = 16
    """Held-out questions (data.val_file, else training questions) sampled once each by the probe."""
    min_format: float = 0.3
    """The cold start runs when fewer than this share of probed trajectories are well formed."""
    probe_after: bool = True
    """Probe again after the cold start (logged, and in the report)."""
    teacher_trajectories: int = 64
    """SFT examples (SearchWorld training questions, single- and two-hop alternating)."""
    epochs: int = 3
    lr: float = 1.0e-3
    batch_size: int = 8
    """Trajectories per SFT optimizer step."""
    lora_rank: int = 16
    lora_alpha: int = 32
    cache_dir: str = ""
    """Where adapters are cached by key ("" = $SEARCHR1_CACHE/cold-start, default ~/.cache/searchr1/cold-start)."""

    def __post_init__(self):
        if self.mode not in ("auto", "always", "never"):
            raise ValueError(f"cold_start.mode={self.mode!r}: use auto, always or never")
        if self.probe_questions < 1 or self.teacher_trajectories < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("cold_start.probe_questions, teacher_trajectories, epochs and batch_size must be >= 1")
        if not 0 <= self.min_format <= 1 or self.lr <= 0 or self.lora_rank < 1:
            raise ValueError("cold_start.min_format must lie in [0, 1], lr > 0 and lora_rank >= 1")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: TrainRolloutConfig = field(default_factory=TrainRolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    actor: ActorConfig = field(default_factory=ActorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    guards: GuardConfig = field(default_factory=GuardConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    cold_start: ColdStartConfig = field(default_factory=ColdStartConfig)
    recipe: str = "rl"
    """rl (algorithm.name decides) | sft | rejection-sampling."""
    total_steps: int = 1005
    """Training steps (paper: 1005)."""
    seed: int = 0
    """Seed for data order, sampling and initialisation."""
    output_dir: str = "runs/train"
    """Where metrics, checkpoints and the final model go."""
    device: str = "auto"
    """auto (cuda when available) | cpu | cuda | cuda:N."""

    def __post_init__(self):
        if self.recipe not in ("rl", "sft", "rejection-sampling"):
            raise ValueError(f"recipe={self.recipe!r}: use rl, sft or rejection-sampling")
        if self.total_steps < 1:
            raise ValueError("total_steps must be >= 1")
        # cross-field rules: settings that are valid alone but cannot train together
        if self.recipe == "sft" and not self.sft.train_file:
            raise ValueError("recipe=sft needs sft.train_file=path.jsonl (SFT records or trajectories)")
        if (self.recipe == "rl" and self.algorithm.name != "ppo" and not self.rollout.do_sample
                and self.algorithm.group_size > 1):
            raise ValueError(f"algorithm.name={self.algorithm.name} with rollout.do_sample=false: the G greedy "
                             "samples of a question are identical, so every advantage is 0 and nothing is "
                             "learned; set rollout.do_sample=true")
        if self.critic.warmup_steps and self.algorithm.name != "ppo":
            raise ValueError(f"critic.warmup_steps={self.critic.warmup_steps} needs a critic: set "
                             "algorithm.name=ppo or critic.warmup_steps=0")
        if self.critic.warmup_steps >= self.total_steps:
            raise ValueError(f"critic.warmup_steps={self.critic.warmup_steps} >= total_steps={self.total_steps}: "
                             "the policy would never be trained; lower critic.warmup_steps")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device={self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.algorithm.tis_cap > 0 and self.rollout.backend != "vllm":
            raise ValueError(f"algorithm.tis_cap={self.algorithm.tis_cap} corrects for a separate rollout engine, "
                             f"but rollout.backend={self.rollout.backend} samples with the trainer's own weights; "
                             "set rollout.backend=vllm or algorithm.tis_cap=0")
        v = self.rollout.vllm
        if self.rollout.backend == "vllm" and v.max_model_len is not None and v.max_model_len < self.rollout.max_total_tokens:
            raise ValueError(f"rollout.vllm.max_model_len={v.max_model_len} is shorter than rollout.max_total_tokens="
                             f"{self.rollout.max_total_tokens}: a trajectory would not fit the engine; raise "
                             "max_model_len or lower max_total_tokens")

    @property
    def vllm_dtype(self) -> str:
        """The engine's dtype: ``rollout.vllm.dtype``, with ``auto`` meaning the policy's ``model.dtype``."""
        return self.model.dtype if self.rollout.vllm.dtype == "auto" else self.rollout.vllm.dtype

    def check_inputs(self) -> None:
        """The files this run reads exist (called before any model loads; raises ConfigError)."""
        wanted = [("sft.train_file", self.sft.train_file)] if self.recipe == "sft" else \
            [("data.train_file", self.data.train_file), ("data.val_file", self.data.val_file)]
        if self.search.backend and (self.data.retriever_url or self.data.index_dir):
            raise ConfigError(f"search.backend={self.search.backend} searches the web; leave data.retriever_url and "
                              "data.index_dir empty (or search.backend empty to use them).")
        remote = self.data.retriever_url or self.search.backend
        if self.recipe != "sft" and self.rollout.search_enabled and not remote:
            if not self.data.index_dir:
                raise ConfigError("no retriever: set data.retriever_url (a `searchr1 serve` URL) or data.index_dir "
                                  "(a directory written by `searchr1 index`), or rollout.search_enabled=false")
            wanted.append(("data.index_dir", self.data.index_dir))
        if self.recipe != "sft" and not self.data.train_file:
            raise ConfigError("no training data: set data.train_file (FlashRAG jsonl or Search-R1 parquet)")
        if self.recipe != "sft" and self.rollout.backend == "vllm":
            if not vllm_available():
                raise ConfigError(f"rollout.backend=vllm, but vLLM is not installed here: {INSTALL_HINT}")
        for key, path in wanted:
            if path and not Path(path).exists():
                raise ConfigError(f"{key}={path} does not exist; fix the path (relative paths start at "
                                  f"{Path.cwd()})")


def config_from_dict(values: dict, overrides: list[str] | None = None, source: str = "") -> TrainConfig:
    """Build a validated TrainConfig from a nested dict plus dotted overrides.

    Every rejection is a :class:`ConfigError` (exit 2 in the CLI) naming ``source`` (the file) when given."""
    try:
        return _build(TrainConfig, _merge(values or {}, parse_overrides(overrides or [])))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None
    except (TypeError, ValueError) as e:   # field types (_coerce) and __post_init__ checks
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None


PRESETS = Path(__file__).resolve().parent.parent / "configs"
"""YAML presets shipped with the package (``configs/`` in the repository points here)."""


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or a preset name (``tiny-cpu``, ``paper-ppo-qwen2.5-3b``) shipped in PRESETS."""
    p = Path(path)
    if p.is_file():
        return p
    preset = PRESETS / (p.name if p.suffix == ".yaml" else f"{p.name}.yaml")
    if p.parent == Path(".") and preset.is_file():
        return preset
    names = ", ".join(sorted(x.stem for x in PRESETS.glob("*.yaml")))
    raise ConfigError(f"config file {p} not found; give a YAML file or a preset name ({names})")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML preset (a file, or a preset name) or start from defaults, and apply dotted overrides."""
    if not path:
        return config_from_dict({}, overrides)
    p = resolve_config_path(path)
    return config_from_dict(read_yaml(p), overrides, source=str(p))
