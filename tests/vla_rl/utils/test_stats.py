import numpy as np
import pytest

from vla_rl.utils.stats import paired_bootstrap_ci, wilson_interval


def test_paired_bootstrap_matches_a_loop_reference_and_degenerate_cases():
    rng = np.random.default_rng(1)
    a, b = rng.random(40), rng.random(40) + 0.1
    lo, hi = paired_bootstrap_ci(a, b, n_boot=500, seed=3)
    ref_rng = np.random.default_rng(3)
    idx = ref_rng.integers(0, 40, (500, 40))
    means = [float(np.mean([b[j] - a[j] for j in row])) for row in idx]
    assert lo == pytest.approx(np.percentile(means, 2.5)) and hi == pytest.approx(np.percentile(means, 97.5))
    assert lo < 0.1 + np.mean(b - 0.1 - a) < hi
    assert paired_bootstrap_ci([0.5] * 5, [0.5] * 5) == (0.0, 0.0)
    assert paired_bootstrap_ci([0.1, 0.2], [0.4, 0.5]) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap_ci([], [])
    with pytest.raises(ValueError, match=r"\(2,\) and \(1,\)"):
        paired_bootstrap_ci([0.1, 0.2], [0.3])


def test_wilson_interval_contains_the_rate_and_stays_in_bounds():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    lo, hi = wilson_interval(31, 100)
    assert lo < 0.31 < hi and hi - lo < 0.2
