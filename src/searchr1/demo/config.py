"""Settings of ``searchr1 demo``: the world, the base model, the curriculum and the evaluation.

The RL settings are a :class:`~searchr1.rl.config.TrainConfig` loaded from the ``demo`` preset
(``configs/demo.yaml``) with overrides, validated before anything runs; this class keeps only what is
specific to the demo.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from searchr1.data.world import WorldConfig
from searchr1.demo.pretrain import PretrainConfig
from searchr1.errors import ConfigError
from searchr1.rl.config import TrainConfig, load_config

DEMO_RELATIONS = ("birthplace", "employer", "birth_country", "employer_city")
DEMO_METHODS = ("search-r1", "r1", "rag", "direct", "base+search")
"""What the demo can compare; ``base+search`` = the base model with the search-r1 method, no RL."""
DEMO_PRESET = "demo"


def demo_train_config(overrides: list[str] | None = None) -> TrainConfig:
    """The demo's RL settings: the ``demo`` preset plus dotted overrides (``algorithm.kl_coef=0.01``)."""
    return load_config(DEMO_PRESET, overrides)


@dataclass
class DemoConfig:
    seed: int = 0
    """Seeds the world, RL sampling and evaluation; the same seed gives the same summary.json on CPU."""
    out: str = "runs/demo"
    """Output directory (report.md, summary.json, curves.png, checkpoint/, world/)."""
    cache_dir: str = "runs/cache"
    """Where a non-default base model is cached (keyed by its config hash)."""
    base_model: str = ""
    """Use this saved base model instead of building/caching one ("" = the shipped one or the cache)."""
    world: WorldConfig = field(default_factory=lambda: WorldConfig(people=200, works=0, relations=DEMO_RELATIONS,
                                                                   dev_frac=0.1, test_frac=0.15))
    """The demo world (its seed is set from ``seed``)."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=demo_train_config)
    """RL settings (algorithm, group size, questions per step = ``data.batch_size``, learning rate, KL,
    rollout budgets, ``total_steps``); its seed is set from ``seed``."""
    single_hop_steps: int = 0
    """Curriculum: the first N of ``train.total_steps`` steps draw single-hop questions only, the rest
    single- and two-hop (0 = mixed from the start; docs/demo.md says why that is the default)."""
    eval_every: int = 4
    """Held-out EM (greedy, dev split) every N steps for the curves; 0 = only at the end."""
    eval_questions: int = 48
    """Dev questions per held-out evaluation during training."""
    test_questions: int = 0
    """Test questions for the final comparison (0 = the whole test split)."""
    methods: tuple[str, ...] = DEMO_METHODS
    """Compared on the test split (any of DEMO_METHODS)."""

    def __post_init__(self):
        self.world.seed = self.seed
        self.train.seed = self.seed
        self.train.rollout.seed = self.seed
        self.methods = tuple(self.methods)
        if not 0 <= self.single_hop_steps <= self.train.total_steps:
            raise ConfigError(f"single_hop_steps={self.single_hop_steps} must lie in [0, total_steps="
                              f"{self.train.total_steps}]; lower it or raise total_steps")
        if self.eval_every < 0 or self.eval_questions < 1 or self.test_questions < 0:
            raise ConfigError("eval_every and test_questions must be >= 0 and eval_questions >= 1")
        unknown = set(self.methods) - set(DEMO_METHODS)
        if unknown:
            raise ConfigError(f"unknown demo methods {sorted(unknown)}; use {', '.join(DEMO_METHODS)}")

    @property
    def total_steps(self) -> int:
        return self.train.total_steps


def fast_config(overrides: list[str] | None = None, **fields) -> DemoConfig:
    """A seconds-scale demo for CI: tiny world, tiny base model, two RL steps (``overrides``: TrainConfig keys)."""
    small = ["algorithm.group_size=2", "data.batch_size=2", "data.mini_batch_size=2", "total_steps=2",
             "rollout.max_turns=2", "rollout.max_turn_tokens=12"]
    base = dict(world=WorldConfig(people=24, works=0, relations=DEMO_RELATIONS, dev_frac=0.2, test_frac=0.2),
                pretrain=PretrainConfig(steps=4, batch_size=4, hidden_size=32, heads=2, copy_dim=16,
                                        vocab_size=400, shadow_people=12, shadow_worlds=2),
                train=demo_train_config(small + list(overrides or [])),
                single_hop_steps=1, eval_every=1, eval_questions=4, test_questions=6)
    base.update(fields)
    return DemoConfig(**base)
