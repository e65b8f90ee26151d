"""A study: a declared grid of conditions, the paper findings to test on it, and the run budget.

Presets ship as YAML under ``searchr1/configs/studies/`` (``quick``, ``paper-findings``); a user YAML file
may ``extends: <preset or file>`` and add or replace conditions (by name) and findings (by name). Layout::

    description: what the study is for
    seeds: 3                       # default for --seeds
    select: best-dev               # best-dev (the checkpoint with the best dev EM) | last
    run: {total_steps: 24, eval_every: 4, dev_questions: 48, test_questions: 96, people: 200,
          set: [algorithm.group_size=5, ...]}      # TrainConfig overrides every condition shares
    conditions:
      grpo: {method: rl, set: [algorithm.name=grpo]}
      r1:   {method: rl, search: false}             # RL without search
      rag:  {method: rag}                           # untrained baselines: base+search, rag, direct
    findings:
      - {name: masking, claim: ..., paper: "0.431 vs 0.343", a: grpo, b: grpo-nomask, metric: em}

A finding expects ``value(a) - value(b) > 0`` (``value(a) > 0`` without ``b``). Metrics: ``em``,
``em_single-hop``, ``em_two-hop`` (test EM, paired per question), ``dev_drop`` (peak minus last dev EM of a
run: collapse) and ``length_dip`` (response length falls, then rises: the thirds of the run).

Every trained condition (``rl``, ``rejection-sampling``) must sample the same number of trajectories
(``total_steps x data.batch_size x algorithm.group_size``): the paper compares at equal rollout budget.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from searchr1.demo.config import demo_train_config
from searchr1.errors import ConfigError
from searchr1.rl.config import TrainConfig
from searchr1.rl.config_tree import parse_overrides, read_yaml

STUDIES = Path(__file__).resolve().parent.parent / "configs" / "studies"
"""Study presets shipped with the package."""
METHODS = ("rl", "rejection-sampling", "base+search", "rag", "direct")
TRAINED = ("rl", "rejection-sampling")
EM_METRICS = ("em", "em_single-hop", "em_two-hop")
CURVE_METRICS = ("dev_drop", "length_dip")
SELECT = ("best-dev", "last")


@dataclass
class Condition:
    name: str
    method: str = "rl"
    """rl | rejection-sampling (trained) | base+search | rag | direct (the base model, untrained)."""
    search: bool = True
    """rl without search = the paper's R1 baseline (one turn, the r1 template)."""
    set: list[str] = field(default_factory=list)
    """TrainConfig overrides on top of the study's ``run.set``."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"condition {self.name!r}: method={self.method!r}; use one of {', '.join(METHODS)}")
        if not self.search and self.method != "rl":
            raise ConfigError(f"condition {self.name!r}: search: false applies to method rl only (the r1 baseline)")

    @property
    def trained(self) -> bool:
        return self.method in TRAINED


@dataclass
class Finding:
    name: str
    claim: str
    a: str
    """The condition expected to score higher (or, without ``b``, to have a positive value)."""
    b: str | None = None
    paper: str = ""
    """The paper's numbers, quoted in the report."""
    metric: str = "em"

    def __post_init__(self):
        if self.metric not in EM_METRICS + CURVE_METRICS:
            raise ConfigError(f"finding {self.name!r}: metric={self.metric!r}; use one of "
                              f"{', '.join(EM_METRICS + CURVE_METRICS)}")
        if self.b is None and self.metric in EM_METRICS:
            raise ConfigError(f"finding {self.name!r}: an EM finding compares two conditions; set b")


@dataclass
class StudyConfig:
    name: str
    description: str = ""
    seeds: int = 2
    select: str = "best-dev"
    total_steps: int = 16
    eval_every: int = 4
    """Dev EM (greedy) every N steps: the curve and the candidates of best-dev selection."""
    dev_questions: int = 48
    test_questions: int = 96
    """Test questions per seed (0 = the whole split); the same for every condition of a seed (paired)."""
    people: int = 200
    """SearchWorld size (the world's seed is the run's seed)."""
    set: list[str] = field(default_factory=list)
    conditions: dict[str, Condition] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    bootstrap: int = 2000
    """Bootstrap resamples of every confidence interval."""
    ci: float = 0.95

    def __post_init__(self):
        if self.select not in SELECT:
            raise ConfigError(f"select={self.select!r}; use best-dev or last")
        if self.seeds < 1 or self.total_steps < 1 or self.eval_every < 1 or self.dev_questions < 1:
            raise ConfigError("seeds, run.total_steps, run.eval_every and run.dev_questions must be >= 1")
        if self.test_questions < 0 or self.people < 10 or self.bootstrap < 100 or not 0.5 < self.ci < 1:
            raise ConfigError("run.test_questions >= 0, run.people >= 10, bootstrap >= 100, 0.5 < ci < 1")
        if not self.conditions:
            raise ConfigError(f"study {self.name!r} declares no conditions")
        for f in self.findings:
            for c in (f.a, f.b):
                if c is not None and c not in self.conditions:
                    raise ConfigError(f"finding {f.name!r} names condition {c!r}, which the study does not "
                                      f"declare; conditions: {', '.join(self.conditions)}")
            if f.metric in CURVE_METRICS and not all(self.conditions[c].trained for c in (f.a, f.b) if c):
                raise ConfigError(f"finding {f.name!r}: metric {f.metric} needs trained conditions (rl, "
                                  "rejection-sampling)")
        budgets = {n: rollout_budget(self.train_config(c)) for n, c in self.conditions.items() if c.trained}
        if len(set(budgets.values())) > 1:
            raise ConfigError("trained conditions must sample the same number of trajectories (total_steps x "
                              f"data.batch_size x algorithm.group_size); got {budgets}: adjust data.batch_size")

    def train_config(self, cond: Condition) -> TrainConfig:
        """The validated RL settings of ``cond``: the demo preset + ``run.set`` + the condition's ``set``."""
        try:
            return demo_train_config([*self.set, *cond.set, f"total_steps={self.total_steps}"])
        except ConfigError as e:
            raise ConfigError(f"condition {cond.name!r}: {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def rollout_budget(t: TrainConfig) -> int:
    """Trajectories a run samples for training."""
    return t.total_steps * t.data.batch_size * t.algorithm.group_size


def resolve_study_path(preset: str) -> Path:
    """A study YAML file, or the name of a shipped study preset."""
    p = Path(preset)
    if p.is_file():
        return p
    shipped = STUDIES / f"{p.stem}.yaml"
    if p.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(x.stem for x in STUDIES.glob("*.yaml")))
    raise ConfigError(f"study {preset!r} not found; give a YAML file or a preset name ({names})")


def _read_tree(preset: str, depth: int = 0) -> dict:
    if depth > 4:
        raise ConfigError(f"study {preset!r}: extends chain deeper than 4 (a cycle?)")
    path = resolve_study_path(preset)
    tree = read_yaml(path)
    parent = tree.pop("extends", None)
    tree.setdefault("name", path.stem)
    if parent is None:
        return tree
    base = _read_tree(str(parent), depth + 1)
    merged = {**base, **{k: v for k, v in tree.items() if k not in ("run", "conditions", "findings")}}
    merged["run"] = {**base.get("run", {}), **tree.get("run", {})}
    merged["conditions"] = {**base.get("conditions", {}), **tree.get("conditions", {})}
    by_name = {f["name"]: f for f in base.get("findings", [])}
    by_name.update({f["name"]: f for f in tree.get("findings", [])})
    merged["findings"] = list(by_name.values())
    return merged


TOP_KEYS = ("name", "description", "seeds", "select", "run", "conditions", "findings", "bootstrap", "ci")
RUN_KEYS = ("total_steps", "eval_every", "dev_questions", "test_questions", "people", "set")


def load_study(preset: str, overrides: list[str] | None = None, seeds: int | None = None) -> StudyConfig:
    """Read a study (preset name or YAML path), apply dotted ``overrides`` (``run.total_steps=4``)."""
    tree = _read_tree(preset)
    for key, value in parse_overrides(overrides or []).items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            tree[key] = {**tree[key], **value}
        else:
            tree[key] = value
    unknown = set(tree) - set(TOP_KEYS)
    if unknown:
        raise ConfigError(f"study {preset!r}: unknown keys {sorted(unknown)}; valid: {', '.join(TOP_KEYS)}")
    run = tree.pop("run", {}) or {}
    bad = set(run) - set(RUN_KEYS)
    if bad:
        raise ConfigError(f"study {preset!r}: unknown run keys {sorted(bad)}; valid: {', '.join(RUN_KEYS)}")
    try:
        conds = {n: Condition(name=n, **(c or {})) for n, c in (tree.pop("conditions", {}) or {}).items()}
        finds = [Finding(**f) for f in tree.pop("findings", []) or []]
        cfg = StudyConfig(**tree, **run, conditions=conds, findings=finds)
    except TypeError as e:
        raise ConfigError(f"study {preset!r}: {e}") from None
    if seeds is not None:
        cfg = dataclasses.replace(cfg, seeds=seeds)
    return cfg


def dump_yaml(cfg: StudyConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
