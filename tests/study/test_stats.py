"""The study's statistics against answers known by hand."""
import numpy as np
import pytest

from searchr1.study import stats


def test_constant_difference_gives_a_zero_width_interval():
    per_seed = [np.full(50, 0.25), np.full(30, 0.25), np.full(80, 0.25)]
    e = stats.hierarchical_bootstrap(per_seed, n_boot=500)
    assert (e.mean, e.lo, e.hi) == (0.25, 0.25, 0.25)
    assert (e.seeds, e.n) == (3, 160)


def test_point_estimate_weighs_every_seed_equally():
    e = stats.hierarchical_bootstrap([[1.0, 1.0, 1.0, 1.0], [0.0]], n_boot=200)
    assert e.mean == 0.5   # not 4/5: the mean of the two seed means


def test_seed_level_variation_spans_the_seed_means():
    # within a seed every question agrees, so only the seed draw varies: replicate means are 0, 0.5 or 1
    e = stats.hierarchical_bootstrap([np.zeros(40), np.ones(40)], n_boot=4000, seed=1)
    assert e.mean == 0.5
    assert e.lo == 0.0 and e.hi == 1.0


def test_one_seed_matches_the_normal_approximation_of_a_proportion():
    rng = np.random.default_rng(0)
    x = (rng.random(400) < 0.5).astype(float)
    e = stats.hierarchical_bootstrap([x], n_boot=4000, seed=2)
    se = x.std() / np.sqrt(x.size)
    assert e.mean == pytest.approx(x.mean())
    assert e.hi - e.lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert e.lo < x.mean() < e.hi


def test_bootstrap_is_reproducible_for_a_seed():
    vals = [[0, 1, 1, 0, 1], [1, 1, 0]]
    assert stats.hierarchical_bootstrap(vals, seed=3) == stats.hierarchical_bootstrap(vals, seed=3)


def test_paired_differences_cancel_question_difficulty():
    a = {0: {"q1": 1.0, "q2": 0.0, "q3": 1.0}, 1: {"q4": 1.0}}
    b = {0: {"q1": 0.0, "q2": 0.0, "q3": 1.0}, 1: {"q4": 0.0}, 2: {"q5": 1.0}}   # seed 2 not shared
    d = stats.paired_differences(a, b)
    assert [x.tolist() for x in d] == [[1.0, 0.0, 0.0], [1.0]]
    with pytest.raises(ValueError, match="different questions"):
        stats.paired_differences({0: {"q1": 1.0}}, {0: {"q2": 1.0}})
    with pytest.raises(ValueError, match="share no seed"):
        stats.paired_differences({0: {"q1": 1.0}}, {1: {"q1": 1.0}})


@pytest.mark.parametrize("lo,hi,verdict", [(0.01, 0.2, stats.REPRODUCED), (-0.3, -0.02, stats.NOT_REPRODUCED),
                                           (-0.1, 0.1, stats.INCONCLUSIVE), (0.0, 0.0, stats.INCONCLUSIVE),
                                           (0.0, 0.3, stats.INCONCLUSIVE)])
def test_classify_by_which_side_of_zero_the_interval_lies(lo, hi, verdict):
    assert stats.classify(stats.Estimate((lo + hi) / 2, lo, hi, 3, 10)) == verdict


def test_curve_statistics():
    assert stats.dev_drop([0.2, 0.6, 0.4]) == pytest.approx(0.2)
    assert stats.dev_drop([0.2, 0.4, 0.6]) == 0.0
    # falls from 100 to 60, rises to 90: min(100 - 60, 90 - 60) = 30
    assert stats.length_dip([100, 100, 60, 60, 90, 90]) == pytest.approx(30.0)
    assert stats.length_dip([100, 90, 80, 70, 60, 50]) < 0   # monotone fall: no dip
    with pytest.raises(ValueError):
        stats.length_dip([1.0, 2.0])


def test_bad_input_is_rejected_with_a_message():
    with pytest.raises(ValueError, match="at least one seed"):
        stats.hierarchical_bootstrap([])
    with pytest.raises(ValueError, match="NaN"):
        stats.hierarchical_bootstrap([[0.1, float("nan")]])


def test_a_seeds_only_verdict_needs_enough_seeds_for_a_sign_test():
    assert stats.min_seeds_for_runs(0.95) == 6 and stats.min_seeds_for_runs(0.9) == 5
    two = stats.hierarchical_bootstrap([[0.1], [0.2]], n_boot=1000)
    assert (two.lo, two.hi) == (0.1, 0.2)            # [min, max]: the two seeds agree, nothing more
    assert stats.classify(two) == stats.REPRODUCED
    assert stats.classify(two, min_seeds=6) == stats.INCONCLUSIVE
    six = stats.hierarchical_bootstrap([[0.1], [0.2], [0.3], [0.1], [0.2], [0.3]], n_boot=1000)
    assert stats.classify(six, min_seeds=6) == stats.REPRODUCED
