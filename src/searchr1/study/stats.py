"""Bootstrap confidence intervals over seeds and questions, and the verdict on a paper finding (numpy only).

Scheme (hierarchical bootstrap): a replicate draws as many seeds as there are, with replacement, and for
each drawn seed resamples that seed's questions with replacement (a seed drawn twice gets two independent
resamples); the replicate's value is the mean over the drawn seeds of their question means, so every seed
weighs the same, like the point estimate. The interval is the percentile interval of the replicates.
A paired difference runs the same scheme on per-question differences (condition A minus B on the same seed
and question), so seed and question difficulty cancel. A per-run statistic (a curve's shape) is the same
scheme with one value per seed: a bootstrap over seeds only.

With 2-3 seeds the seed level of the interval is coarse (a replicate can only be one of a few seed draws);
the report says how many seeds each interval rests on. A seeds-only interval is [min, max] of the per-run
values for few seeds, so "it excludes 0" means "every seed agrees": a sign test whose level 2**-n reaches
(1 - ci) / 2 only at :func:`min_seeds_for_runs` seeds; with fewer, such a finding stays inconclusive.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import math

import numpy as np

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    seeds: int
    n: int
    """Values (questions, or runs) behind the estimate, all seeds together."""

    def fmt(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def hierarchical_bootstrap(per_seed: Sequence[Sequence[float]], n_boot: int = 2000, ci: float = 0.95,
                           seed: int = 0) -> Estimate:
    """Mean of per-seed means with a percentile CI. per_seed: one 1-D sequence of values per seed."""
    arrays = [np.asarray(v, dtype=float) for v in per_seed]
    if not arrays or any(a.ndim != 1 or a.size == 0 for a in arrays):
        raise ValueError("hierarchical_bootstrap needs at least one seed, each with at least one value")
    if any(np.isnan(a).any() for a in arrays):
        raise ValueError("hierarchical_bootstrap got NaN values; drop or fill them first")
    rng = np.random.default_rng(seed)
    S = len(arrays)
    pick = rng.integers(0, S, size=(n_boot, S))   # (n_boot, S): the seed drawn in each slot
    reps = np.zeros(n_boot)
    for j in range(S):
        for s, a in enumerate(arrays):
            rows = np.flatnonzero(pick[:, j] == s)
            if rows.size:
                reps[rows] += a[rng.integers(0, a.size, size=(rows.size, a.size))].mean(axis=1)
    reps /= S
    alpha = (1.0 - ci) / 2
    lo, hi = np.quantile(reps, [alpha, 1.0 - alpha])
    point = float(np.mean([a.mean() for a in arrays]))
    # the percentile interval of a constant is the constant; keep float noise from shifting it off the point
    return Estimate(point, min(float(lo), point), max(float(hi), point), S, int(sum(a.size for a in arrays)))


def paired_differences(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> list[np.ndarray]:
    """Per-seed arrays of a - b over the questions both have. a, b: seed -> {question id: value}.

    Raises when the two conditions share no seed or a seed's question sets differ (not a paired design)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("the two conditions share no seed; run both on the same seeds")
    out = []
    for s in seeds:
        if set(a[s]) != set(b[s]):
            raise ValueError(f"seed {s}: the two conditions were scored on different questions")
        ids = sorted(a[s])
        out.append(np.array([a[s][q] - b[s][q] for q in ids], dtype=float))
    return out


def min_seeds_for_runs(ci: float = 0.95) -> int:
    """Seeds a one-value-per-seed bootstrap needs before every seed agreeing is significant at ``ci``
    (two-sided sign test: 2**-n <= (1 - ci) / 2): 6 for 0.95."""
    return math.ceil(math.log2(2.0 / (1.0 - ci)) - 1e-9)


def classify(est: Estimate, min_seeds: int = 1) -> str:
    """The paper's direction is positive: a CI above 0 reproduces it, below 0 contradicts it; an estimate
    on fewer than ``min_seeds`` seeds is inconclusive whatever its interval."""
    if est.seeds < min_seeds:
        return INCONCLUSIVE
    if est.lo > 0:
        return REPRODUCED
    if est.hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def dev_drop(dev_em: Sequence[float]) -> float:
    """Collapse of one run: peak dev EM minus the last dev EM (0 when the run ends at its peak)."""
    if not dev_em:
        raise ValueError("dev_drop needs at least one dev evaluation")
    return float(max(dev_em) - dev_em[-1])


def length_dip(lengths: Sequence[float]) -> float:
    """Falls, then rises: min(first third - middle third, last third - middle third) of the mean
    response length per step; > 0 only when the middle of the run is below both its ends."""
    x = np.asarray(lengths, dtype=float)
    if x.size < 3:
        raise ValueError("length_dip needs at least 3 steps")
    first, middle, last = (p.mean() for p in np.array_split(x, 3))
    return float(min(first - middle, last - middle))
