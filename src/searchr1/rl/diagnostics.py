"""Collapse diagnostics of one RL step (pure functions over a step's trajectories and rewards).

GRPO-style training on search tasks is known to collapse when trained long (the paper), and later work
traced it to likelihood displacement: the log-probability of *correct* responses falls while training on
them. These metrics make that visible every step (``collapse/…``):

* ``same_reward_groups`` — share of groups whose samples all got the same reward: they carry no
  group-relative signal (all 0: nothing found; all 1: nothing to learn);
* ``searches_{0,1,2,3+}`` — distribution of searches per trajectory (a policy that stops searching, or loops);
* ``rewarded_logp`` — mean per-token sampling log-probability of the policy tokens of rewarded trajectories
  (likelihood displacement: it should rise as the policy sharpens on what is rewarded; a fall while the
  reward holds is the warning sign); NaN when nothing was rewarded or log-probs were not recorded;
* ``invalid_rate`` — invalid actions / all actions.

``guards.max_same_reward_groups``, ``guards.min_rewarded_logp`` and ``guards.max_invalid_rate`` warn (or,
with ``guards.early_stop``, stop) when a step crosses them.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

from searchr1.rollout.types import Trajectory

SEARCH_BINS = ("0", "1", "2", "3+")


def collapse_metrics(trajs: Sequence[Trajectory], scores: Sequence[float]) -> dict[str, float]:
    """``collapse/…`` metrics of one step. trajs, scores: (B,) with ``group_id`` set on trajectories."""
    groups: dict[object, list[float]] = defaultdict(list)
    for i, (t, s) in enumerate(zip(trajs, scores)):
        groups[t.group_id if t.group_id is not None else ("row", i)].append(float(s))
    multi = [g for g in groups.values() if len(g) > 1]
    out = {"collapse/same_reward_groups": (sum(max(g) == min(g) for g in multi) / len(multi)) if multi else math.nan}
    n = max(1, len(trajs))
    for b in SEARCH_BINS:
        lo = int(b.rstrip("+"))
        out[f"collapse/searches_{b}"] = sum((t.searches >= lo) if b.endswith("+") else (t.searches == lo)
                                            for t in trajs) / n
    lp_sum, lp_n = 0.0, 0
    for t, s in zip(trajs, scores):
        if s > 0 and t.response_logprobs is not None:
            for lp, m in zip(t.response_logprobs, t.response_mask):
                if m:
                    lp_sum += lp
                    lp_n += 1
    out["collapse/rewarded_logp"] = lp_sum / lp_n if lp_n else math.nan
    actions = sum(t.valid_actions + t.invalid_actions for t in trajs)
    out["collapse/invalid_rate"] = sum(t.invalid_actions for t in trajs) / actions if actions else 0.0
    return out


def collapse_warnings(m: dict[str, float], max_same_reward_groups: float | None, min_rewarded_logp: float | None,
                      max_invalid_rate: float | None) -> list[str]:
    """The thresholds a step's metrics crossed (NaN never crosses)."""
    problems = []
    same, logp, invalid = (m.get(f"collapse/{k}", math.nan) for k in ("same_reward_groups", "rewarded_logp",
                                                                        "invalid_rate"))
    if max_same_reward_groups is not None and same > max_same_reward_groups:
        problems.append(f"{same:.2f} of groups had one reward for all samples > "
                        f"guards.max_same_reward_groups={max_same_reward_groups} (no learning signal)")
    if min_rewarded_logp is not None and logp < min_rewarded_logp:
        problems.append(f"log-prob of rewarded responses {logp:.3f} < guards.min_rewarded_logp={min_rewarded_logp} "
                        "(likelihood displacement)")
    if max_invalid_rate is not None and invalid > max_invalid_rate:
        problems.append(f"invalid-action rate {invalid:.2f} > guards.max_invalid_rate={max_invalid_rate}")
    return problems
